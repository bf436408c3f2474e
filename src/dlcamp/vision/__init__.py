"""Computer vision below the models (layer 2): bounding boxes (`boxes.py`); anchors, scenes and
detection data follow (issue 14)."""
