"""Pictures of a run, drawn from what it left in model_dir: `python -m simclr_tf.plots <command>`.

curves (simclr_tf.plots.curves), augmentations (simclr_tf.plots.grid) and embedding
(simclr_tf.plots.embedding). This module holds what they share: checking model_dir and
writing a figure atomically; the run's records are read by simclr_tf.run_dir.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from simclr_tf.errors import UserError
from simclr_tf.plots.grid import save_png_atomically

PLOTS_SUBDIR = "plots"


class PlotError(UserError, ValueError):
    """model_dir lacks what a picture needs; the message names the directory or file."""


def check_model_dir(model_dir: str) -> None:
    if not model_dir:
        raise PlotError("--model_dir is required")
    if "://" in model_dir:
        raise PlotError(f"--model_dir={model_dir}: remote model_dirs are not read yet; copy it to a local directory")
    if not os.path.isdir(model_dir):
        raise PlotError(f"--model_dir={model_dir}: no such directory")


def default_output(model_dir: str, name: str) -> str:
    """model_dir/plots/<name>.png."""
    return os.path.join(model_dir, PLOTS_SUBDIR, f"{name}.png")


def save_figure_atomically(figure, path: str) -> str:
    """Renders a matplotlib Figure with Agg (no display) at its own size and dpi, so the PNG
    has exactly figsize * dpi pixels, and writes it atomically; returns the path."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    save_png_atomically(Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB"), path)
    return path
