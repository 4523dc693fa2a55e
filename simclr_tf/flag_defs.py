"""absl flag definitions shared by the command-line tools, and their translation into configs.

Only CLI modules import this; the library takes the config objects it returns.
Flag names follow google-research/simclr's run.py where it has the same meaning.
"""

import tensorflow as tf
from absl import flags, logging

from simclr_tf.augment import SIMCLR_OPS, AugmentConfig, parse_ops
from simclr_tf.data import SourceConfig
from simclr_tf.errors import UserError


def define_source_flags(default_split: str = "train") -> None:
    flags.DEFINE_string(
        "dataset", "fashion_mnist_offline",
        "fashion_mnist_offline (Debian's IDX files, no network), folder:/path/to/images, "
        "or a tensorflow-datasets name such as cifar10, stl10, imagenet2012_subset/1pct.")
    flags.DEFINE_string("train_split", default_split, "Split to read (tfds split expressions allowed).")
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir, or the IDX directory.")
    flags.DEFINE_bool("download", False,
                      "Let tensorflow-datasets download and prepare a dataset missing from --data_dir (the reference "
                      "always does; here a run reaches the network only when asked to).")
    flags.DEFINE_enum("bad_files", "error", ["error", "skip"],
                      "Image folders: stop naming files that are not intact images (empty, truncated, not an "
                      "image), or skip them and report how many.")


def source_config_from_flags(values: flags.FlagValues, split: str) -> SourceConfig:
    kwargs = dict(dataset=values.dataset, split=split, bad_files=values.bad_files, download=values.download)
    if values.data_dir:
        kwargs["data_dir"] = values.data_dir
    return SourceConfig(**kwargs)


def define_augment_flags() -> None:
    flags.DEFINE_integer("image_size", 224, "Side of the square views, in pixels.")
    flags.DEFINE_list(
        "augmentations", None,
        f"Ops to apply, in order, from crop,flip,color_jitter,grayscale,blur,cutout,rotate,noise,sobel. "
        f"Default: the paper's ({','.join(SIMCLR_OPS)}), without blur for images <= 32 px.")
    flags.DEFINE_float("color_jitter_strength", None, "Colour distortion strength s. Default: 1.0, or 0.5 for images <= 32 px.")
    flags.DEFINE_bool("use_blur", None, "Gaussian blur. Default: on above 32 px, off at or below (the paper's CIFAR setting).")
    flags.DEFINE_float("crop_min_area", 0.08, "Smallest crop area as a fraction of the image.")
    flags.DEFINE_float("flip_probability", 0.5, "Probability of a horizontal flip.")
    flags.DEFINE_float("color_jitter_probability", 0.8, "Probability of colour jitter.")
    flags.DEFINE_float("grayscale_probability", 0.2, "Probability of grayscale.")
    flags.DEFINE_float("blur_probability", 0.5, "Probability of Gaussian blur.")


def augment_config_from_flags(values: flags.FlagValues) -> AugmentConfig:
    overrides = dict(
        crop_area_range=(values.crop_min_area, 1.0),
        flip_probability=values.flip_probability,
        color_jitter_probability=values.color_jitter_probability,
        grayscale_probability=values.grayscale_probability,
        blur_probability=values.blur_probability,
    )
    if values.augmentations is not None:
        overrides["ops"] = parse_ops(",".join(values.augmentations))
    if values.color_jitter_strength is not None:
        overrides["color_jitter_strength"] = values.color_jitter_strength
    if values.use_blur is not None:
        ops = overrides.get("ops") or AugmentConfig.for_image_size(values.image_size).ops
        ops = tuple(o for o in ops if o != "blur")
        overrides["ops"] = ops + ("blur",) if values.use_blur else ops
    return AugmentConfig.for_image_size(values.image_size, **overrides)


class FlagError(UserError, ValueError):
    """A flag value (or combination) a command-line tool cannot use; the message names the flag."""


def quiet_logging(values: flags.FlagValues) -> None:
    """TensorFlow's and absl's INFO lines (checkpoint sharding, ...) would bury a CLI's own output;
    an explicit --verbosity still wins."""
    tf.get_logger().setLevel("WARNING")
    if not values["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
