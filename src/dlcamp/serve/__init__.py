"""Serving a trained image classifier: preprocessing, the HTTP app, the web page, ONNX export.

    dlcamp serve runs/demo            # http://127.0.0.1:8000/  (POST /predict, GET /docs)
    dlcamp export runs/demo --format onnx
"""
