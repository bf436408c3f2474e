"""Computer vision below the models (layer 2): bounding boxes (`boxes.py`) and anchor boxes
(`anchors.py`), COCO average precision (`average_precision.py`), per-sample batch
augmentation that moves boxes with the pixels (`augment.py`); scenes and detection data follow
(issue 14)."""
