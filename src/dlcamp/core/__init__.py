"""The bottom layer: errors, the name registry, files written atomically, small utilities."""
