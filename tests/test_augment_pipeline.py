import numpy as np
import pytest
import tensorflow as tf

from augment_helpers import draw_many, draw_many_eager
from simclr_tf.augment import AugmentConfig, as_seed, build_pipeline, make_views, parse_ops

RNG = np.random.default_rng(0)
PHOTO = tf.constant(RNG.integers(0, 256, (40, 48, 3)), tf.uint8)


def views_of(config, image=PHOTO, seed=0, epoch=0, index=0, num_views=2):
    return np.asarray(make_views(build_pipeline(config), image, as_seed(seed), epoch, index, num_views))


@pytest.mark.parametrize("config", [AugmentConfig(image_size=32, ops=("crop", "flip", "color_jitter", "grayscale", "blur")),
                                    AugmentConfig.for_image_size(32),
                                    AugmentConfig(image_size=24, ops=("crop", "cutout", "rotate", "noise", "sobel"))])
def test_views_have_shape_dtype_and_unit_range(config):
    views = views_of(config, num_views=3)
    assert views.shape == (3, config.image_size, config.image_size, 3)
    assert views.dtype == np.float32
    assert views.min() >= 0.0 and views.max() <= 1.0


def test_default_224_pipeline_runs_with_blur():
    views = views_of(AugmentConfig(), image=tf.image.resize(PHOTO, [256, 300]))
    assert views.shape == (2, 224, 224, 3) and 0.0 <= views.min() and views.max() <= 1.0


def test_same_seed_reproduces_and_views_examples_epochs_seeds_differ():
    config = AugmentConfig.for_image_size(32)
    reference = views_of(config, seed=7, epoch=1, index=3)
    np.testing.assert_array_equal(reference, views_of(config, seed=7, epoch=1, index=3))
    assert np.abs(reference[0] - reference[1]).mean() > 0.01
    for other in (dict(seed=8, epoch=1, index=3), dict(seed=7, epoch=2, index=3), dict(seed=7, epoch=1, index=4)):
        assert np.abs(reference - views_of(config, **other)).mean() > 0.01, other


def test_full_pipeline_in_tf_data_equals_eager():
    pipeline = build_pipeline(AugmentConfig(image_size=32, ops=("crop", "flip", "color_jitter", "grayscale", "blur")))
    image = tf.cast(PHOTO, tf.float32) / 255.0
    graph = draw_many(lambda s: pipeline(image, s), 6)
    eager = draw_many_eager(lambda s: pipeline(image, s), 6)
    np.testing.assert_allclose(graph, eager, atol=1e-4)


def test_ops_without_crop_still_resize_to_image_size():
    views = views_of(AugmentConfig(image_size=20, ops=("grayscale",), grayscale_probability=1.0))
    assert views.shape == (2, 20, 20, 3)
    np.testing.assert_allclose(views[0], views[1], atol=1e-6)  # nothing random left


def test_cifar_defaults_follow_the_paper():
    config = AugmentConfig.for_image_size(32)
    assert config.color_jitter_strength == 0.5 and "blur" not in config.ops
    assert AugmentConfig.for_image_size(224).ops == ("crop", "flip", "color_jitter", "grayscale", "blur")


def test_parse_ops():
    assert parse_ops(" crop, flip ,sobel,") == ("crop", "flip", "sobel")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(ops=("crop", "solarize")), "solarize"),
        (dict(grayscale_probability=1.2), "grayscale_probability"),
        (dict(image_size=16), "image_size=16"),
        (dict(crop_area_range=(0.0, 1.0)), "crop_area_range"),
        (dict(image_size=0), "image_size"),
    ],
)
def test_bad_config_raises_naming_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        AugmentConfig(**kwargs)
