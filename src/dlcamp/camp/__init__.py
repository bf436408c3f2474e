"""The hackathon app (issue 15): teams photograph objects, label boxes in the browser, export.

Storage is SQLite plus content-addressed image files (`storage.py`, `schema.py`, `blobs.py`,
with the group-commit writer in `writer.py` and the write transactions in `edits.py`); the
HTTP API and the page sit on top (`api.py`, `static/`); formats convert through
`interchange.py`.
"""
