"""Filtering ops: Gaussian blur, and the ablation's Gaussian noise and Sobel.

Gaussian blur as in SimCLR, Chen et al. 2020, arXiv:2002.05709, Appendix A.
"""

import dataclasses

import tensorflow as tf

from simclr_tf.augment import seeds
from simclr_tf.augment.compose import check_range


def blur_kernel_radius(image_size: int, kernel_fraction: float = 0.1) -> int:
    """Radius of the reference's blur kernel: side = image_size * fraction, made odd."""
    return int(image_size * kernel_fraction) // 2


def gaussian_kernel_1d(radius: int, sigma: tf.Tensor) -> tf.Tensor:
    x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
    kernel = tf.exp(-tf.square(x) / (2.0 * tf.square(tf.cast(sigma, tf.float32))))
    return kernel / tf.reduce_sum(kernel)


@dataclasses.dataclass(frozen=True)
class GaussianBlur:
    """Separable Gaussian blur; sigma ~ U(sigma_range) drawn per image (the paper),
    kernel side 10% of `image_size` (the reference: radius = side // 2).

    Borders are reflect-padded rather than zero-padded as in the reference, whose
    'SAME' depthwise convolution darkens a frame of `radius` pixels on every view.
    """

    image_size: int
    sigma_range: tuple[float, float] = (0.1, 2.0)
    kernel_fraction: float = 0.1

    def __post_init__(self):
        check_range("sigma_range", self.sigma_range, 1e-6, 1e3)
        if self.radius < 1:
            raise ValueError(
                f"image_size={self.image_size} is too small for Gaussian blur: the kernel side "
                f"is {self.kernel_fraction:g} x image_size, so blur needs image_size >= "
                f"{int(2 / self.kernel_fraction)}; turn blur off (use_blur=False) for small images"
            )

    @property
    def radius(self) -> int:
        return blur_kernel_radius(self.image_size, self.kernel_fraction)

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        sigma = seeds.uniform(seed, self.sigma_range[0], self.sigma_range[1])
        kernel = gaussian_kernel_1d(self.radius, sigma)
        channels = 3
        horizontal = tf.tile(kernel[None, :, None, None], [1, 1, channels, 1])
        vertical = tf.tile(kernel[:, None, None, None], [1, 1, channels, 1])
        r = self.radius
        padded = tf.pad(image[None], [[0, 0], [r, r], [r, r], [0, 0]], mode="REFLECT")
        blurred = tf.nn.depthwise_conv2d(padded, horizontal, [1, 1, 1, 1], "VALID")
        blurred = tf.nn.depthwise_conv2d(blurred, vertical, [1, 1, 1, 1], "VALID")
        return blurred[0]


@dataclasses.dataclass(frozen=True)
class GaussianNoise:
    """Adds N(0, sigma^2) pixel noise, sigma ~ U(stddev_range) per image (ablation op)."""

    stddev_range: tuple[float, float] = (0.0, 0.1)

    def __post_init__(self):
        check_range("stddev_range", self.stddev_range, 0.0, 10.0)

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        sigma_seed, noise_seed = seeds.split(seed, 2)
        sigma = seeds.uniform(sigma_seed, self.stddev_range[0], self.stddev_range[1])
        noise = tf.random.stateless_normal(tf.shape(image), noise_seed, dtype=image.dtype)
        return tf.clip_by_value(image + sigma * noise, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Sobel:
    """Sobel gradient magnitude of the grayscale image, as 3 channels in [0, 1] (ablation op).

    The magnitude is divided by its maximum possible value (4 * sqrt(2) for inputs in
    [0, 1]) so the result keeps a fixed scale instead of per-image normalisation.
    """

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        del seed
        gray = tf.image.rgb_to_grayscale(image)[None]
        gradients = tf.image.sobel_edges(gray)[0, :, :, 0, :]
        magnitude = tf.norm(gradients, axis=-1, keepdims=True) / (4.0 * 2.0**0.5)
        return tf.tile(tf.clip_by_value(magnitude, 0.0, 1.0), [1, 1, 3])
