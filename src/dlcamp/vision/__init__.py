"""Computer vision below the models (layer 2): bounding boxes (`boxes.py`) and anchor boxes
(`anchors.py`); augmentation with boxes, scenes and detection data follow (issue 14)."""
