"""Learning curves: drawn live in a notebook, saved as PNG in a script. Never blocks.

We draw on a bare `matplotlib.figure.Figure` (no pyplot, no GUI backend), so a script on a
headless machine or under pytest never opens a window.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from matplotlib.figure import Figure

from dlcamp.core.io import atomic_write_bytes
from dlcamp.train.callbacks import Callback


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not in a plain IPython terminal)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def curves_figure(history: list[dict[str, float]], title: str = "",
                  fig: Figure | None = None) -> Figure:
    """Losses on the left, accuracy-like metrics on the right, against the epoch.

    Pass `fig=plt.figure()` in a lesson to have pyplot show it; by default a bare Figure.
    """
    fig = fig if fig is not None else Figure(figsize=(9, 3.4), dpi=100)
    ax_loss, ax_metric = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in history]
    keys = list(dict.fromkeys(k for r in history for k in r))
    for key in keys:
        values = [r.get(key) for r in history]
        if key.endswith("loss"):
            ax_loss.plot(epochs, values, marker="o", label=key)
        elif key.endswith(("acc", "rmse", "ppl", "map", "map_50")):
            ax_metric.plot(epochs, values, marker="o", label=key)
    for ax, name in ((ax_loss, "loss"), (ax_metric, "metric")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def figure_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class PlotCurves(Callback):
    """Callback: redraw the curves after each epoch (inline in Jupyter) and save `path`."""

    def __init__(self, path: Path | str | None = None, live: bool | None = None,
                 title: str = "") -> None:
        self.path = Path(path) if path else None
        self.live = in_notebook() if live is None else live
        self.title, self._handle = title, None

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        png = figure_png(curves_figure(trainer.history, self.title))
        if self.path is not None:
            atomic_write_bytes(self.path, png)
        if self.live:
            from IPython.display import Image, display

            if self._handle is None:
                self._handle = display(Image(data=png), display_id=True)
            else:
                self._handle.update(Image(data=png))
