"""Runs the original SavedModel and our imported model on the same images, output by output."""

from __future__ import annotations

import dataclasses

import numpy as np

from simclr_tf.models import OUTPUT_NAMES, SimCLRModel


@dataclasses.dataclass(frozen=True)
class OutputDifference:
    """max_abs: max |ours - theirs|; relative: max_abs / max |theirs| (the output's scale),
    so a tolerance reads as a fraction of the output's largest value."""

    max_abs: float
    relative: float


def output_differences(module, model: SimCLRModel, images: np.ndarray, *, training: bool = False
                       ) -> dict[str, OutputDifference]:
    """{output name: difference} for every named output both return, in OUTPUT_NAMES order.

    The original runs as its SavedModel's `__call__(images, trainable)`; with
    training=True both use batch statistics and update their BN moving averages.
    """
    theirs = {name: np.asarray(value) for name, value in module(images, trainable=training).items()}
    ours = {name: np.asarray(value) for name, value in model(images, training=training).items()}
    return {name: difference(ours[name], theirs[name]) for name in OUTPUT_NAMES if name in theirs and name in ours}


def difference(ours: np.ndarray, theirs: np.ndarray) -> OutputDifference:
    gap = np.abs(ours.astype(np.float64) - theirs)
    max_abs = float(np.max(np.where(np.isnan(gap), np.inf, gap))) if theirs.size else 0.0  # NaN fails any tolerance
    scale = float(np.max(np.abs(theirs))) if theirs.size else 0.0
    return OutputDifference(max_abs, max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")))


def random_images(batch_size: int, image_size: int, seed: int = 0) -> np.ndarray:
    """Uniform [0, 1) float32 NHWC images, the original's input range."""
    return np.random.default_rng(seed).uniform(size=(batch_size, image_size, image_size, 3)).astype(np.float32)
