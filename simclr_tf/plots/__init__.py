"""Pictures of a run, drawn from what it left in model_dir: `python -m simclr_tf.plots <command>`.

curves (simclr_tf.plots.curves), augmentations (simclr_tf.plots.grid) and embedding
(simclr_tf.plots.embedding). This module holds what they share: reading model_dir and
writing a figure atomically. Light on purpose: TensorFlow and matplotlib load only when used.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

PLOTS_SUBDIR = "plots"
CONFIG_FILE = "config.json"


class PlotError(ValueError):
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


def read_run_config(model_dir: str) -> dict:
    """model_dir/config.json (RunConfig.write) as a dict of sections."""
    check_model_dir(model_dir)
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise PlotError(f"--model_dir={model_dir}: no {CONFIG_FILE} (not a simclr_tf.run model_dir?)")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise PlotError(f"{path}: not valid JSON ({error})") from error


def config_from_dict(cls: type, values: dict[str, Any]):
    """A frozen config dataclass from its config.json section: JSON lists become tuples again,
    and keys this version does not know (a newer run's) are left out."""
    known = {field.name for field in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known})


def save_figure_atomically(figure, path: str) -> str:
    """Renders a matplotlib Figure with Agg (no display) at its own size and dpi, so the PNG
    has exactly figsize * dpi pixels, and writes it atomically; returns the path."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    from simclr_tf.plots.grid import save_png_atomically

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    save_png_atomically(Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB"), path)
    return path
