"""The course: lessons (runner, export), slides and their assets, and the helpers lessons share."""
