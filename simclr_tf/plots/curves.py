"""Training curves of a run in one PNG: loss, contrastive accuracy, label accuracy, learning rate.

Reads model_dir/train_log.jsonl (simclr_tf.training.progress: one JSON object per
logged step, metrics and learning_rate) and model_dir/result_<step>.json
(simclr_tf.evaluation.checkpoint_eval) through simclr_tf.run_dir. A panel without data
says so instead of failing.
"""

from __future__ import annotations

import math
import os

from matplotlib.figure import Figure

from simclr_tf import run_dir
from simclr_tf.plots import PlotError, check_model_dir, save_figure_atomically
FIGURE_INCHES = (12.0, 9.0)
DPI = 100
PNG_SIZE = (1200, 900)  # (width, height) px = FIGURE_INCHES * DPI

# (train_log.jsonl key, legend label) per panel; eval results are added to the label-accuracy panel.
LOSS_KEYS = (("contrast_loss", "contrastive loss"), ("total_loss", "total loss"))
CONTRAST_ACC_KEYS = (("contrast_acc", "contrastive accuracy (positive ranked first)"),)
LABEL_ACC_KEYS = (("supervised_acc", "online linear head (train batches)"), ("knn_top1", "kNN monitor top-1"))
# (result_<step>.json path, legend label): evaluations of checkpoints.
RESULT_KEYS = (
    (("label_top_1_accuracy",), "supervised head, eval split"),
    (("linear_eval", "top1"), "linear eval, eval split"),
    (("linear_eval_random_encoder", "top1"), "linear eval, random encoder"),
)


def read_train_log(model_dir: str) -> list[dict]:
    """The run's train_log.jsonl records by step; a PlotError when there are none."""
    check_model_dir(model_dir)
    path = os.path.join(model_dir, run_dir.TRAIN_LOG_FILE)
    if not os.path.isfile(path):
        raise PlotError(f"--model_dir={model_dir}: no {run_dir.TRAIN_LOG_FILE} (has the run trained a step yet?)")
    records = run_dir.read_train_log(model_dir)
    if not records:
        raise PlotError(f"{path}: empty, no training step logged yet")
    return records


def read_results(model_dir: str) -> list[dict]:
    """The result_<step>.json evaluations, by step (result.json repeats the newest one)."""
    return run_dir.read_results(model_dir)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def series(records: list[dict], key: tuple[str, ...] | str, step_key: str = "step") -> tuple[list[int], list[float]]:
    """(steps, values) of the records that hold a number at `key` (a nested path for results)."""
    path = (key,) if isinstance(key, str) else key
    steps, values = [], []
    for record in records:
        value = record
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        number = _number(value)
        if number is not None:
            steps.append(int(record[step_key]))
            values.append(number)
    return steps, values


def _panel(axes, title: str, ylabel: str, lines: list[tuple[str, list[int], list[float], dict]]) -> None:
    axes.set_title(title)
    axes.set_xlabel("step")
    axes.set_ylabel(ylabel)
    drawn = [(label, steps, values, style) for label, steps, values, style in lines if steps]
    if not any(math.isfinite(v) for _, _, values, _ in drawn for v in values):
        axes.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=16, color="gray", transform=axes.transAxes)
        return
    for label, steps, values, style in drawn:
        axes.plot(steps, values, label=label, **style)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize=9)


def curves_figure(records: list[dict], results: list[dict], title: str = "") -> Figure:
    """2x2 panels of FIGURE_INCHES at DPI."""
    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI)
    (loss, contrast, label, rate) = figure.subplots(2, 2).flat
    line = {"linewidth": 1.5}
    point = {"marker": "o", "linestyle": "--"}

    def train_lines(keys):
        return [(text, *series(records, key), line) for key, text in keys]

    _panel(loss, "loss", "loss", train_lines(LOSS_KEYS))
    _panel(contrast, "contrastive accuracy", "accuracy", train_lines(CONTRAST_ACC_KEYS))
    _panel(label, "label accuracy (top-1)", "accuracy", train_lines(LABEL_ACC_KEYS) + [
        (text, *series(results, key, step_key="global_step"), point) for key, text in RESULT_KEYS])
    _panel(rate, "learning rate", "learning rate", train_lines((("learning_rate", "learning rate"),)))
    if title:
        figure.suptitle(title)
    figure.subplots_adjust(left=0.07, right=0.97, bottom=0.07, top=0.92, wspace=0.25, hspace=0.35)
    return figure


def write_curves(model_dir: str, output: str) -> str:
    """Draws model_dir's training curves into `output` (PNG_SIZE px); returns the path."""
    records = read_train_log(model_dir)
    results = read_results(model_dir)
    last = records[-1]
    title = f"{os.path.basename(os.path.normpath(model_dir))}: step {last['step']}"
    if _number(last.get("total_steps")):
        title += f"/{int(last['total_steps'])}"
    return save_figure_atomically(curves_figure(records, results, title), output)
