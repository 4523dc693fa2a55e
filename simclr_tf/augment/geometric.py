"""Spatial ops: random resized crop, flip, rotation, cutout, eval centre crop.

Crop and flip as in SimCLR, Chen et al. 2020, arXiv:2002.05709, §3 and Appendix A.
"""

import dataclasses

import tensorflow as tf

from simclr_tf.augment import seeds
from simclr_tf.augment.compose import check_probability, check_range

EVAL_CROP_PROPORTION = 0.875


def _image_hw(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    shape = tf.shape(image)
    return shape[0], shape[1]


def resize_bicubic(image: tf.Tensor, size: int) -> tf.Tensor:
    return tf.image.resize(image, [size, size], method=tf.image.ResizeMethod.BICUBIC)


def sample_crop_box(
    seed: tf.Tensor,
    height: tf.Tensor,
    width: tf.Tensor,
    area_range: tuple[float, float],
    aspect_ratio_range: tuple[float, float],
    max_attempts: int,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Samples (offset_y, offset_x, crop_height, crop_width) as in SimCLR Appendix A.

    Area fraction ~ U(area_range) and aspect ratio (w/h) ~ U(aspect_ratio_range), as
    in the paper (SimCLR, Chen et al. 2020, arXiv:2002.05709). TF's
    sample_distorted_bounding_box draws the crop *height* uniformly instead, which
    skews areas, so the draw is done here: all attempts are sampled at once and
    the first that fits is kept, else the whole image.
    """
    area_seed, ratio_seed, y_seed, x_seed = seeds.split(seed, 4)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    areas = seeds.uniform(area_seed, area_range[0], area_range[1], (max_attempts,)) * h * w
    ratios = seeds.uniform(ratio_seed, aspect_ratio_range[0], aspect_ratio_range[1], (max_attempts,))
    crop_w = tf.round(tf.sqrt(areas * ratios))
    crop_h = tf.round(tf.sqrt(areas / ratios))
    fits = (crop_w >= 1) & (crop_w <= w) & (crop_h >= 1) & (crop_h <= h)
    first = tf.argmax(tf.cast(fits, tf.int32))
    any_fits = tf.reduce_any(fits)
    crop_h = tf.where(any_fits, crop_h[first], h)
    crop_w = tf.where(any_fits, crop_w[first], w)
    # floor(U[0,1) * (n + 1)) is uniform over the n + 1 valid integer offsets.
    offset_y = tf.floor(seeds.uniform(y_seed) * (h - crop_h + 1.0))
    offset_x = tf.floor(seeds.uniform(x_seed) * (w - crop_w + 1.0))
    return tuple(tf.cast(v, tf.int32) for v in (offset_y, offset_x, crop_h, crop_w))


@dataclasses.dataclass(frozen=True)
class RandomResizedCrop:
    """Random crop of random area and aspect ratio, resized (bicubic) to `size` x `size`."""

    size: int
    area_range: tuple[float, float] = (0.08, 1.0)
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3)
    max_attempts: int = 100

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size!r}")
        check_range("area_range", self.area_range, 1e-6, 1.0)
        check_range("aspect_ratio_range", self.aspect_ratio_range, 1e-3, 1e3)
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        height, width = _image_hw(image)
        offset_y, offset_x, crop_h, crop_w = sample_crop_box(
            seed, height, width, self.area_range, self.aspect_ratio_range, self.max_attempts
        )
        crop = tf.slice(image, [offset_y, offset_x, 0], [crop_h, crop_w, -1])
        return resize_bicubic(crop, self.size)


@dataclasses.dataclass(frozen=True)
class RandomFlip:
    """Horizontal flip with `probability`."""

    probability: float = 0.5

    def __post_init__(self):
        check_probability("probability", self.probability)

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        return tf.cond(
            seeds.bernoulli(seed, self.probability),
            lambda: tf.image.flip_left_right(image),
            lambda: image,
        )


@dataclasses.dataclass(frozen=True)
class RandomRotation90:
    """Rotation by 90, 180 or 270 degrees, uniformly (the paper's rotation ablation)."""

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        quarter_turns = tf.random.stateless_uniform([], seed, minval=1, maxval=4, dtype=tf.int32)
        return tf.image.rot90(image, quarter_turns)


@dataclasses.dataclass(frozen=True)
class Cutout:
    """Sets a random square of side `size_fraction` x the shorter side to `fill_value`.

    The square's centre is uniform over the image and it may extend past the
    border (DeVries & Taylor 2017), so border pixels are not under-masked.
    """

    size_fraction: float = 0.5
    fill_value: float = 0.5

    def __post_init__(self):
        if not 0.0 < self.size_fraction <= 1.0:
            raise ValueError(f"size_fraction must be in (0, 1], got {self.size_fraction!r}")

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        height, width = _image_hw(image)
        side = tf.cast(tf.minimum(height, width), tf.float32) * self.size_fraction
        centre = seeds.uniform(seed, 0.0, 1.0, (2,)) * tf.cast(tf.stack([height, width]), tf.float32)
        rows = tf.cast(tf.range(height), tf.float32)[:, None]
        cols = tf.cast(tf.range(width), tf.float32)[None, :]
        inside = (tf.abs(rows + 0.5 - centre[0]) < side / 2) & (tf.abs(cols + 0.5 - centre[1]) < side / 2)
        return tf.where(inside[:, :, None], tf.cast(self.fill_value, image.dtype), image)


def center_crop_resize(image: tf.Tensor, size: int, crop_proportion: float = EVAL_CROP_PROPORTION) -> tf.Tensor:
    """Eval preprocessing for images > 32 px: central crop of `crop_proportion` of the
    target aspect ratio (the reference's center_crop), then bicubic resize."""
    height, width = _image_hw(image)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    # Largest centred square of the image, scaled by crop_proportion.
    side = tf.minimum(h, w) * crop_proportion
    crop = tf.cast(tf.round(side), tf.int32)
    offset_y = (height - crop + 1) // 2
    offset_x = (width - crop + 1) // 2
    cropped = tf.slice(image, [offset_y, offset_x, 0], [crop, crop, -1])
    return resize_bicubic(cropped, size)


def preprocess_for_eval(image: tf.Tensor, size: int) -> tf.Tensor:
    """Eval preprocessing: centre crop 87.5% + resize above 32 px, else resize only.

    As in the evaluation of SimCLR, Chen et al. 2020, arXiv:2002.05709.
    """
    if size > 32:
        image = center_crop_resize(image, size)
    elif image.shape[0] != size or image.shape[1] != size:
        image = resize_bicubic(image, size)
    return tf.clip_by_value(image, 0.0, 1.0)

