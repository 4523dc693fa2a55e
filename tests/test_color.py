import colorsys

import numpy as np
import pytest
import tensorflow as tf

from augment_helpers import colourful_image, draw_many, draw_many_eager
from simclr_tf.augment import ColorJitter, Grayscale, RandomApply


def test_brightness_is_a_multiplicative_factor_spread_over_its_range():
    jitter = ColorJitter(strength=1.0, contrast=0.0, saturation=0.0, hue=0.0)
    grey = tf.fill([4, 4, 3], 0.5)
    factors = draw_many(lambda s: jitter(grey, s), 3000)[:, 0, 0, 0] / 0.5
    # Strength 1: U(1 - 0.8, 1 + 0.8); the top of the range stays below the 1.0 clip at 0.5 * 1.8.
    assert factors.min() >= 0.2 - 1e-6 and factors.max() <= 1.8 + 1e-6
    assert factors.min() < 0.25 and factors.max() > 1.75
    assert factors.mean() == pytest.approx(1.0, abs=0.03)
    counts, _ = np.histogram(factors, bins=4, range=(0.2, 1.8))
    assert counts.min() > 0.2 * len(factors)


def test_strength_scales_every_range():
    jitter = ColorJitter(strength=0.5)
    assert (jitter.brightness_delta, jitter.contrast_delta, jitter.saturation_delta, jitter.hue_delta) == (
        pytest.approx(0.4), pytest.approx(0.4), pytest.approx(0.4), pytest.approx(0.1))


def test_hue_shift_matches_colorsys_within_range():
    jitter = ColorJitter(strength=1.0, brightness=0.0, contrast=0.0, saturation=0.0)
    pixel = np.array([0.8, 0.3, 0.2], np.float32)
    image = tf.constant(np.tile(pixel, (2, 2, 1)))
    outputs = draw_many(lambda s: jitter(image, s), 500)[:, 0, 0]
    base_hue = colorsys.rgb_to_hsv(*pixel)[0]
    shifts = []
    for rgb in outputs:
        h, s, v = colorsys.rgb_to_hsv(*rgb)
        shifts.append((h - base_hue + 0.5) % 1.0 - 0.5)
        assert s == pytest.approx(colorsys.rgb_to_hsv(*pixel)[1], abs=1e-3)
    shifts = np.array(shifts)
    assert np.abs(shifts).max() <= 0.2 + 1e-3 and np.abs(shifts).max() > 0.18


def test_jitter_applied_with_probability_0_8():
    image = colourful_image(8)
    outputs = draw_many(lambda s: RandomApply(ColorJitter(1.0), 0.8)(image, s), 2000)
    changed = ~np.all(np.isclose(outputs, np.asarray(image)), axis=(1, 2, 3))
    assert changed.mean() == pytest.approx(0.8, abs=4 * np.sqrt(0.16 / 2000))


def test_grayscale_with_probability_0_2_keeps_three_equal_channels():
    image = colourful_image(8)
    outputs = draw_many(lambda s: RandomApply(Grayscale(), 0.2)(image, s), 2000)
    gray = np.all(np.isclose(outputs[..., 0], outputs[..., 1]) & np.isclose(outputs[..., 1], outputs[..., 2]), axis=(1, 2))
    assert outputs.shape[-1] == 3
    assert gray.mean() == pytest.approx(0.2, abs=4 * np.sqrt(0.16 / 2000))
    luma = np.asarray(image) @ np.array([0.2989, 0.5870, 0.1140])
    np.testing.assert_allclose(outputs[gray][0, ..., 0], luma, atol=1e-3)


def test_jitter_output_in_unit_range_and_graph_equals_eager():
    image = colourful_image(16)
    jitter = ColorJitter(1.0)
    graph = draw_many(lambda s: jitter(image, s), 16)
    eager = draw_many_eager(lambda s: jitter(image, s), 16)
    assert graph.min() >= 0.0 and graph.max() <= 1.0
    np.testing.assert_allclose(graph, eager, atol=1e-5)


def test_random_order_varies_the_order():
    # Contrast (around each channel's mean) and saturation (around each pixel's grey)
    # do not commute, so the same factors in the other order give another image.
    jitter = ColorJitter(strength=1.0, brightness=0.0, hue=0.0)
    fixed = ColorJitter(strength=1.0, brightness=0.0, hue=0.0, random_order=False)
    image = colourful_image(8)
    random_order = draw_many(lambda s: jitter(image, s), 200)
    fixed_order = draw_many(lambda s: fixed(image, s), 200)
    same = np.all(np.isclose(random_order, fixed_order, atol=1e-5), axis=(1, 2, 3))
    # Two ops: half the draws keep the fixed order (same factors, same seed), half swap it.
    assert 0.3 < same.mean() < 0.7


@pytest.mark.parametrize("kwargs", [dict(strength=-1.0), dict(hue=0.6), dict(contrast=-0.1)])
def test_bad_arguments_raise_naming_them(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ColorJitter(**kwargs)
