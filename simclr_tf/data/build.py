"""`build_source`: the `Source` a dataset name stands for (tfds, an image folder, or offline IDX files)."""

import os
from typing import Callable

from simclr_tf.data import folder, idx, tfds_source
from simclr_tf.data.source import FASHION_MNIST_OFFLINE, FOLDER_PREFIX, DataSourceError, Source, SourceConfig

# A dataset string starting like this is a path even without "folder:".
_PATH_STARTS = ("/", "./", "../", "~")


def source_kind(dataset: str) -> str:
    """Which builder reads `dataset`: a key of the dict in `build_source`."""
    if dataset == FASHION_MNIST_OFFLINE:
        return FASHION_MNIST_OFFLINE
    if dataset.startswith(FOLDER_PREFIX) or dataset.startswith(_PATH_STARTS):
        return "folder"
    if os.path.isdir(dataset):
        return "folder"
    return "tfds"


def build_source(config: SourceConfig) -> Source:
    """The `Source` named by `config.dataset`."""
    builders: dict[str, Callable[[SourceConfig], Source]] = {
        FASHION_MNIST_OFFLINE: idx.build_fashion_mnist_source,
        "folder": folder.build_folder_source,
        "tfds": tfds_source.build_tfds_source,
    }
    kind = source_kind(config.dataset)
    if config.multi_label and kind != "tfds":
        raise DataSourceError(f"{config.dataset} has one label per image; SourceConfig.multi_label needs a tfds "
                              f"dataset whose images list their classes (e.g. voc/2007)")
    return builders[kind](config)
