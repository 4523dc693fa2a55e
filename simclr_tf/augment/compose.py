"""Combinators: apply an op with a probability, chain ops, clip.

Every op in simclr_tf.augment is a callable `op(image, seed) -> image` on one
float32 HxWx3 image in [0, 1] with a shape-[2] stateless seed. Ops are frozen
dataclasses, so a pipeline is a plain value: printable, comparable, hashable.
"""

import dataclasses
from typing import Protocol

import tensorflow as tf

from simclr_tf.augment import seeds


class AugmentOp(Protocol):
    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor: ...


def check_probability(name: str, probability: float) -> None:
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {probability!r}")


def check_range(name: str, value_range: tuple[float, float], low: float, high: float) -> None:
    if len(value_range) != 2 or not low <= value_range[0] <= value_range[1] <= high:
        raise ValueError(
            f"{name} must be (min, max) with {low} <= min <= max <= {high}, got {value_range!r}"
        )


@dataclasses.dataclass(frozen=True)
class RandomApply:
    """Applies `op` with `probability`, else returns the image unchanged."""

    op: AugmentOp
    probability: float

    def __post_init__(self):
        check_probability("probability", self.probability)

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        if self.probability == 0.0:
            return image
        coin_seed, op_seed = seeds.split(seed, 2)
        if self.probability == 1.0:
            return self.op(image, op_seed)
        return tf.cond(
            seeds.bernoulli(coin_seed, self.probability),
            lambda: self.op(image, op_seed),
            lambda: image,
        )


@dataclasses.dataclass(frozen=True)
class Compose:
    """Applies `ops` in order, each with its own independent seed."""

    ops: tuple[AugmentOp, ...]

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        if not self.ops:
            return image
        for op, op_seed in zip(self.ops, seeds.split(seed, len(self.ops))):
            image = op(image, op_seed)
        return image


@dataclasses.dataclass(frozen=True)
class Clip:
    """Clips to [0, 1]: bicubic resizing and blurring overshoot slightly."""

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        del seed
        return tf.clip_by_value(image, 0.0, 1.0)
