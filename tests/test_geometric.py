import numpy as np
import pytest
import tensorflow as tf

from augment_helpers import colourful_image, draw_many, draw_many_eager
from simclr_tf.augment import Cutout, RandomFlip, RandomResizedCrop, RandomRotation90, preprocess_for_eval, sample_crop_box


def crop_boxes(height, width, count=4000, area_range=(0.08, 1.0)):
    return draw_many(
        lambda s: tf.stack(sample_crop_box(s, height, width, area_range, (3 / 4, 4 / 3), 100)), count
    )


def test_crop_area_fraction_within_spec_range_and_spread_across_it():
    boxes = crop_boxes(224, 224)
    offset_y, offset_x, crop_h, crop_w = boxes.T
    area = crop_h * crop_w / (224 * 224)
    # Rounding the side to whole pixels moves the area by at most ~1/112 of it.
    assert area.min() >= 0.08 * (1 - 0.02) and area.max() <= 1.0
    # Expected law: area ~ U(0.08, 1) accepted with the probability that its box
    # fits, i.e. that the ratio ~ U(3/4, 4/3) lies in [a, 1/a] for a square image.
    grid = np.linspace(0.08, 1.0, 200_001)
    fits = (np.minimum(4 / 3, 1 / grid) - np.maximum(3 / 4, grid)).clip(0) / (4 / 3 - 3 / 4)
    edges = np.linspace(0.08, 1.0, 9)
    expected = np.array([fits[(grid >= lo) & (grid < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:])])
    expected /= expected.sum()
    observed, _ = np.histogram(area, bins=edges)
    np.testing.assert_allclose(observed / len(area), expected, atol=0.025)
    assert observed.min() > 0.02 * len(area)
    assert np.all(offset_y >= 0) and np.all(offset_y + crop_h <= 224)
    assert np.all(offset_x >= 0) and np.all(offset_x + crop_w <= 224)


def test_crop_aspect_ratio_within_range_and_offsets_cover_the_image():
    offset_y, offset_x, crop_h, crop_w = crop_boxes(100, 160).T
    ratio = crop_w / crop_h
    assert ratio.min() >= 3 / 4 * 0.9 and ratio.max() <= 4 / 3 * 1.1
    small = crop_h * crop_w < 0.2 * 100 * 160
    assert offset_x[small].min() <= 2 and (offset_x + crop_w)[small].max() >= 158


def test_crop_falls_back_to_whole_image_when_nothing_fits():
    # Aspect ratio 4 cannot fit an area of 90% in a square image.
    box = sample_crop_box(tf.constant([1, 2], tf.int64), 50, 50, (0.9, 0.9), (4.0, 4.0), 100)
    assert [int(v) for v in box] == [0, 0, 50, 50]


def test_full_area_crop_of_same_size_image_is_identity():
    image = colourful_image(32)
    crop = RandomResizedCrop(32, area_range=(1.0, 1.0), aspect_ratio_range=(1.0, 1.0))
    out = crop(image, tf.constant([3, 4], tf.int64))
    np.testing.assert_allclose(out, image, atol=1e-5)


def test_crop_output_shape_dtype_and_matches_eager():
    image = colourful_image(48)
    crop = RandomResizedCrop(24)
    graph = draw_many(lambda s: crop(image, s), 8)
    eager = draw_many_eager(lambda s: crop(image, s), 8)
    assert graph.shape == (8, 24, 24, 3) and graph.dtype == np.float32
    np.testing.assert_allclose(graph, eager, atol=1e-5)


def test_flip_probability_is_half():
    image = colourful_image(8)
    flips = draw_many(lambda s: RandomFlip(0.5)(image, s), 2000)
    flipped = np.all(np.isclose(flips, np.asarray(image)[:, ::-1]), axis=(1, 2, 3))
    unchanged = np.all(np.isclose(flips, np.asarray(image)), axis=(1, 2, 3))
    assert np.all(flipped | unchanged)
    # 4 standard deviations of a binomial(2000, 0.5) proportion.
    assert flipped.mean() == pytest.approx(0.5, abs=4 * np.sqrt(0.25 / 2000))


def test_rotation_is_one_of_three_quarter_turns_each_about_a_third():
    image = colourful_image(8)
    rotated = draw_many(lambda s: RandomRotation90()(image, s), 900)
    turns = [np.all(np.isclose(rotated, np.rot90(np.asarray(image), k)), axis=(1, 2, 3)) for k in range(4)]
    assert not turns[0].any()
    assert np.all(turns[1] | turns[2] | turns[3])
    for k in (1, 2, 3):
        assert turns[k].mean() == pytest.approx(1 / 3, abs=0.07)


def test_cutout_masks_one_square_of_the_configured_side():
    image = tf.ones([40, 40, 3])
    masked = draw_many(lambda s: Cutout(size_fraction=0.25, fill_value=0.0)(image, s), 200)[..., 0] == 0.0
    rows, cols = masked.any(axis=2), masked.any(axis=1)
    assert np.all(rows.sum(axis=1) <= 10) and np.all(cols.sum(axis=1) <= 10)
    # A full square wherever it lies fully inside the image.
    inside = (rows.sum(axis=1) == 10) & (cols.sum(axis=1) == 10)
    assert inside.mean() > 0.4
    np.testing.assert_array_equal(masked[inside].sum(axis=(1, 2)), 100)


def test_eval_preprocessing_center_crops_large_and_resizes_small():
    big = tf.constant(np.random.default_rng(0).uniform(size=(256, 256, 3)), tf.float32)
    # 87.5% of 256 is 224: the centre crop is already the target size.
    np.testing.assert_allclose(preprocess_for_eval(big, 224), np.asarray(big)[16:240, 16:240], atol=1e-5)
    small = tf.zeros([28, 28, 3])
    assert preprocess_for_eval(small, 32).shape == (32, 32, 3)
    same = colourful_image(32)
    np.testing.assert_array_equal(preprocess_for_eval(same, 32), same)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomResizedCrop(0),
        lambda: RandomResizedCrop(32, area_range=(0.5, 0.1)),
        lambda: RandomFlip(1.5),
        lambda: Cutout(size_fraction=0.0),
    ],
)
def test_bad_arguments_raise(make):
    with pytest.raises(ValueError):
        make()
