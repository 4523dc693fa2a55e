import numpy as np
import pytest
import tensorflow as tf

from augment_helpers import colourful_image, draw_many
from simclr_tf.augment import GaussianBlur, GaussianNoise, Sobel


def numpy_blur(image: np.ndarray, radius: int, sigma: float) -> np.ndarray:
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-x**2 / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(image, [(radius, radius), (radius, radius), (0, 0)], mode="reflect")
    rows = np.stack([np.convolve(padded[i, :, c], kernel, "valid") for i in range(padded.shape[0]) for c in range(3)])
    rows = rows.reshape(padded.shape[0], 3, -1).transpose(0, 2, 1)
    cols = np.stack([np.convolve(rows[:, j, c], kernel, "valid") for j in range(rows.shape[1]) for c in range(3)])
    return cols.reshape(rows.shape[1], 3, -1).transpose(2, 0, 1)


@pytest.mark.parametrize("image_size, radius", [(64, 3), (32, 1), (224, 11)])
def test_blur_equals_numpy_separable_gaussian(image_size, radius):
    blur = GaussianBlur(image_size, sigma_range=(1.3, 1.3))
    assert blur.radius == radius
    image = colourful_image(image_size)
    out = blur(image, tf.constant([0, 1], tf.int64))
    np.testing.assert_allclose(out, numpy_blur(np.asarray(image), radius, 1.3), atol=1e-5)


def test_blur_sigma_is_drawn_per_image_in_range():
    blur = GaussianBlur(64)
    image = colourful_image(64)
    blurred = draw_many(lambda s: blur(image, s), 64)
    # Smoothing strength (lost variance) must vary from image to image.
    variances = blurred.var(axis=(1, 2, 3))
    assert variances.max() - variances.min() > 0.1 * np.asarray(image).var()
    # sigma <= 2 with radius 3 still keeps part of the detail; sigma >= 0.1 ~ identity.
    assert variances.max() == pytest.approx(np.asarray(image).var(), rel=0.05)


def test_blur_keeps_constant_images_constant():
    out = GaussianBlur(32)(tf.fill([32, 32, 3], 0.7), tf.constant([5, 6], tf.int64))
    np.testing.assert_allclose(out, 0.7, atol=1e-6)


def test_blur_rejects_images_too_small_for_the_kernel():
    with pytest.raises(ValueError, match="image_size=16"):
        GaussianBlur(16)


def test_noise_adds_zero_mean_noise_of_bounded_std():
    noisy = draw_many(lambda s: GaussianNoise((0.05, 0.05))(tf.fill([32, 32, 3], 0.5), s), 20)
    assert noisy.mean() == pytest.approx(0.5, abs=0.005)
    assert noisy.std() == pytest.approx(0.05, rel=0.05)


def test_sobel_equals_numpy_gradient_magnitude():
    rng = np.random.default_rng(1)
    image = rng.uniform(size=(9, 9, 3)).astype(np.float32)
    out = np.asarray(Sobel()(tf.constant(image), tf.constant([0, 0], tf.int64)))
    gray = image @ np.array([0.2989, 0.5870, 0.1140], np.float32)
    padded = np.pad(gray, 1, mode="reflect")
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
    gx = np.array([[np.sum(padded[i:i + 3, j:j + 3] * kx) for j in range(9)] for i in range(9)])
    gy = np.array([[np.sum(padded[i:i + 3, j:j + 3] * kx.T) for j in range(9)] for i in range(9)])
    expected = np.sqrt(gx**2 + gy**2) / (4 * np.sqrt(2))
    np.testing.assert_allclose(out[..., 0], expected, atol=1e-4)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
