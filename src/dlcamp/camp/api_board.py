"""(issue 16, being written) routes; `install(app, data_dir)` adds them."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI

router = APIRouter()


def install(app: FastAPI, data_dir: Path) -> None:
    """Add this module's routes (and any state they need) to the camp app."""
    app.include_router(router)
