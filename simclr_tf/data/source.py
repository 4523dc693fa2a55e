"""The common shape of every image source, and `build_source` to pick one.

A source is the first stage of the SimCLR data flow: it yields each example
once, in a fixed order, as `(index, image, label)`. Augmentation (two views),
shuffling, repetition and batching happen downstream.
"""

import dataclasses
from typing import Callable

import tensorflow as tf

from simclr_tf.errors import ConfigError, UserError

FASHION_MNIST_OFFLINE = "fashion_mnist_offline"
FOLDER_PREFIX = "folder:"
# What a folder source does with files that are not intact images: stop naming them, or
# leave them out and report them (Source.skipped).
BAD_FILE_POLICIES = ("error", "skip")


class DataSourceError(UserError, ValueError):
    """A dataset, path or file cannot be used as a source; the message names it."""


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """Which images to read.

    dataset: "fashion_mnist_offline" (Debian's IDX files, no network), "folder:/path"
      (or a path such as "/data/imgs"), or a tfds name such as "cifar10", "stl10",
      "imagenet2012_subset/1pct".
    split: a tfds split expression ("train[:10%]", "unlabelled"); "train" or
      "test" for fashion_mnist_offline; must stay "train" for folders.
    data_dir: tfds data_dir; for fashion_mnist_offline the IDX directory
      (default /usr/share/datasets/fashion-mnist); must be None for folders.
    download: let tfds download and prepare a dataset missing from data_dir.
    bad_files: for folders, "error" stops (naming the files) when some are not
      intact images, "skip" leaves them out and lists them in Source.skipped.
    multi_label: read every class an image holds (a tfds dataset with a `labels`
      sequence, such as voc/2007) instead of one `label`; see Source.multi_label.
    """

    dataset: str = FASHION_MNIST_OFFLINE
    split: str = "train"
    data_dir: str | None = None
    download: bool = False
    bad_files: str = "error"
    multi_label: bool = False

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError("SourceConfig.dataset", f"must be a non-empty string, got {self.dataset!r}")
        if not isinstance(self.split, str) or not self.split.strip():
            raise ConfigError("SourceConfig.split", f"must be a non-empty string, got {self.split!r}")
        if self.bad_files not in BAD_FILE_POLICIES:
            raise ConfigError("SourceConfig.bad_files", f"must be one of {BAD_FILE_POLICIES}, got {self.bad_files!r}")


MakeDataset = Callable[[tf.distribute.InputContext | None], tf.data.Dataset]


@dataclasses.dataclass(frozen=True)
class Source:
    """A finite image source.

    `make_dataset(input_context)` returns an unbatched, unshuffled dataset of
    `(index, image, label)`: index int64 in [0, num_examples), unique over the
    whole source so augmentation seeds can depend on it; image uint8 [H, W, 3];
    label int64, -1 when unlabeled. A `multi_label` source's label is int64
    [num_classes], per class 1 (the image holds it), 0 (only as objects marked
    "difficult", which the VOC metric ignores) or -1 (not in the image), as the
    PASCAL VOC devkit writes classification ground truth. With an InputContext of n pipelines,
    pipeline k yields a disjoint part and the n parts together yield everything
    once (see each builder for how the parts are cut).
    """

    name: str
    num_examples: int
    num_classes: int | None  # None when unlabeled
    make_dataset: MakeDataset
    class_names: tuple[str, ...] | None = None
    skipped: tuple[str, ...] = ()  # "path: reason" of files left out (bad_files="skip")
    multi_label: bool = False


def pipeline_shard(input_context: tf.distribute.InputContext | None) -> tuple[int, int]:
    """(number of pipelines, this pipeline's id); (1, 0) without a context."""
    if input_context is None:
        return 1, 0
    return input_context.num_input_pipelines, input_context.input_pipeline_id


def shard_every_nth(
    ds: tf.data.Dataset, input_context: tf.distribute.InputContext | None
) -> tf.data.Dataset:
    """Pipeline k of n keeps elements k, k + n, k + 2n, ..."""
    num_pipelines, pipeline_id = pipeline_shard(input_context)
    if num_pipelines == 1:
        return ds
    return ds.shard(num_pipelines, pipeline_id)
