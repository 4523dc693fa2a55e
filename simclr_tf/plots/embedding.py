"""A 2-D t-SNE map of the encoder features h (final_avg_pool) of a run's checkpoint on its
eval split, coloured by label: do the classes form clusters without ever seeing a label?

Writes the PNG and, beside it, a JSON of the coordinates and labels for machines.
"""

from __future__ import annotations

import dataclasses
import math
import os

import matplotlib
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from simclr_tf.data import build_source
from simclr_tf.evaluation.features import DEFAULT_OUTPUT, encoder_features
from simclr_tf.io_utils import write_json_atomically
from simclr_tf.plots import PlotError, check_model_dir, save_figure_atomically
from simclr_tf.run_dir import RunDir
from simclr_tf.training.checkpoints import model_from_run

FIGURE_INCHES = (10.0, 8.0)
DPI = 100
PNG_SIZE = (1000, 800)  # (width, height) px = FIGURE_INCHES * DPI
TSNE_RANDOM_STATE = 0
MIN_EXAMPLES = 5  # t-SNE's perplexity must stay below the number of points.
MAX_PERPLEXITY = 30.0  # sklearn's default, lowered for fewer than 91 points.
MAX_LEGEND_CLASSES = 20  # More classes are coloured but not listed.


@dataclasses.dataclass(frozen=True)
class Features:
    features: np.ndarray  # [N, D] float32
    labels: np.ndarray  # [N] int64
    class_names: tuple[str, ...]  # one per class index
    checkpoint: str
    dataset: str
    split: str


def run_features(model_dir: str, checkpoint: str | None, num_examples: int) -> Features:
    """h of the first `num_examples` examples of the run's eval split, by the checkpoint
    (default: model_dir's newest) rebuilt on one device."""
    check_model_dir(model_dir)
    run = RunDir.open(model_dir)
    if checkpoint is None and run.latest_checkpoint() is None:
        raise PlotError(f"--model_dir={model_dir}: no checkpoint yet (or give --checkpoint)")
    model, path = model_from_run(run, checkpoint)
    split = run.config.eval.eval_split
    source = build_source(dataclasses.replace(run.config.source, split=split))
    if not source.num_classes:
        raise PlotError(f"{source.name}:{split} (eval_split in {model_dir}/config.json) has no labels to colour by")
    batch_size = min(run.config.eval.eval_batch_size, num_examples)
    features, labels = encoder_features(
        tf.distribute.get_strategy(), model, source, image_size=run.config.augment.image_size,
        global_batch_size=batch_size, max_steps=math.ceil(num_examples / batch_size),
    )
    names = source.class_names or tuple(str(k) for k in range(source.num_classes))
    return Features(features[:num_examples], labels[:num_examples], tuple(names), path, source.name, split)


def tsne_2d(features: np.ndarray, random_state: int = TSNE_RANDOM_STATE) -> tuple[np.ndarray, float]:
    """([N, 2] t-SNE coordinates, the perplexity used); the same input gives the same map.

    Runs on one OpenMP thread: Barnes-Hut t-SNE opens a parallel region in each of its
    1000 iterations, and on cores shared with other processes those regions made 100
    points take 20-35 s instead of 0.3 s (2000 points: about 10 s on one thread).
    """
    # Imported when a map is drawn: scikit-learn takes seconds to import, which the curves
    # and augmentation plots would pay for nothing. threadpoolctl comes with it.
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if len(features) < MIN_EXAMPLES:
        raise PlotError(f"t-SNE needs at least {MIN_EXAMPLES} examples, got {len(features)}")
    perplexity = min(MAX_PERPLEXITY, (len(features) - 1) / 3.0)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state)
    with threadpool_limits(limits=1, user_api="openmp"):
        coordinates = tsne.fit_transform(np.asarray(features, np.float64))
    return coordinates.astype(np.float32), perplexity


def embedding_figure(coordinates: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], title: str) -> Figure:
    """Scatter of FIGURE_INCHES at DPI, one colour per class, legend on the right."""
    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI)
    axes = figure.add_axes((0.06, 0.06, 0.68, 0.86))
    classes = sorted(int(label) for label in np.unique(labels))
    cmap = _colormap(len(class_names))
    for label in classes:
        keep = labels == label
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        axes.scatter(coordinates[keep, 0], coordinates[keep, 1], s=8, color=cmap(label % cmap.N), label=name,
                     alpha=0.8, linewidths=0)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title, fontsize=10)
    if len(classes) <= MAX_LEGEND_CLASSES:
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9, markerscale=2, frameon=False)
    else:
        axes.text(1.02, 1.0, f"{len(classes)} classes\n(too many to list)", transform=axes.transAxes, va="top")
    return figure


def _colormap(num_classes: int):
    return matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20"]


def write_embedding(model_dir: str, output: str, *, checkpoint: str | None = None,
                    num_examples: int = 2000) -> tuple[str, str]:
    """Writes `output` (PNG_SIZE px) and `output` with .json: {coordinates [N, 2], labels [N], ...}."""
    if num_examples < MIN_EXAMPLES:
        raise PlotError(f"--num_examples must be >= {MIN_EXAMPLES}, got {num_examples}")
    found = run_features(model_dir, checkpoint, num_examples)

    coordinates, perplexity = tsne_2d(found.features)
    title = (f"t-SNE of h (final_avg_pool), {os.path.basename(found.checkpoint)}: "
             f"{len(found.labels)} examples of {found.dataset}:{found.split}")
    save_figure_atomically(embedding_figure(coordinates, found.labels, found.class_names, title), output)
    json_path = os.path.splitext(output)[0] + ".json"
    write_json_atomically(json_path, {
        "checkpoint": found.checkpoint,
        "dataset": found.dataset,
        "split": found.split,
        "features": DEFAULT_OUTPUT,
        "num_examples": int(len(found.labels)),
        "class_names": list(found.class_names),
        "tsne": {"perplexity": perplexity, "random_state": TSNE_RANDOM_STATE},
        "coordinates": coordinates.tolist(),
        "labels": found.labels.astype(int).tolist(),
    })
    return output, json_path
