"""Colour ops: colour jitter in random order, grayscale.

As in SimCLR, Chen et al. 2020, arXiv:2002.05709, Appendix A.
"""

import dataclasses

import tensorflow as tf

from simclr_tf.augment import seeds


@dataclasses.dataclass(frozen=True)
class ColorJitter:
    """Brightness, contrast, saturation and hue jitter, applied in a random order.

    With `strength` s the ranges are the paper's: brightness and contrast and
    saturation factors U(1 - 0.8s, 1 + 0.8s), hue delta U(-0.2s, 0.2s). Brightness
    is multiplicative (the SimCLR v2 reference), not tf.image's additive delta.
    Each component can be overridden; 0 disables it. The image is clipped to
    [0, 1] after every op, as the reference does.
    """

    strength: float = 1.0
    brightness: float | None = None
    contrast: float | None = None
    saturation: float | None = None
    hue: float | None = None
    random_order: bool = True

    def __post_init__(self):
        if self.strength < 0:
            raise ValueError(f"strength must be >= 0, got {self.strength!r}")
        for name in ("brightness", "contrast", "saturation", "hue"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if self.hue_delta > 0.5:
            raise ValueError(f"hue must be <= 0.5 (a half turn of the colour wheel), got {self.hue_delta!r}")

    @property
    def brightness_delta(self) -> float:
        return 0.8 * self.strength if self.brightness is None else self.brightness

    @property
    def contrast_delta(self) -> float:
        return 0.8 * self.strength if self.contrast is None else self.contrast

    @property
    def saturation_delta(self) -> float:
        return 0.8 * self.strength if self.saturation is None else self.saturation

    @property
    def hue_delta(self) -> float:
        return 0.2 * self.strength if self.hue is None else self.hue

    def _factor(self, seed: tf.Tensor, delta: float) -> tf.Tensor:
        return seeds.uniform(seed, max(1.0 - delta, 0.0), 1.0 + delta)

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        order_seed, b_seed, c_seed, s_seed, h_seed = seeds.split(seed, 5)
        brightness = self._factor(b_seed, self.brightness_delta)
        contrast = self._factor(c_seed, self.contrast_delta)
        saturation = self._factor(s_seed, self.saturation_delta)
        hue = seeds.uniform(h_seed, -self.hue_delta, self.hue_delta)
        transforms = [
            lambda x: x * brightness,
            lambda x: tf.image.adjust_contrast(x, contrast),
            lambda x: tf.image.adjust_saturation(x, saturation),
            lambda x: tf.image.adjust_hue(x, hue),
        ]
        deltas = [self.brightness_delta, self.contrast_delta, self.saturation_delta, self.hue_delta]
        enabled = [t for t, delta in zip(transforms, deltas) if delta > 0]
        if not enabled:
            return image
        if not self.random_order or len(enabled) == 1:
            for transform in enabled:
                image = tf.clip_by_value(transform(image), 0.0, 1.0)
            return image
        order = tf.argsort(seeds.uniform(order_seed, shape=(len(enabled),)))

        def apply_one(index: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
            branches = [lambda t=t: tf.clip_by_value(t(x), 0.0, 1.0) for t in enabled]
            return tf.switch_case(index, branches)

        for step in range(len(enabled)):
            image = apply_one(order[step], image)
        return image


@dataclasses.dataclass(frozen=True)
class Grayscale:
    """Luma grayscale kept as 3 identical channels (use with RandomApply for p = 0.2)."""

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        del seed
        return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])
