"""Fashion-MNIST from gzip IDX files on disk: the offline default source.

Debian's `dataset-fashion-mnist` package installs the four IDX files in
/usr/share/datasets/fashion-mnist, so tests and smoke runs need no network.
IDX format (LeCun's MNIST page): a big-endian uint32 magic number
(0x0000 | dtype code 0x08 = uint8 | number of dims), one big-endian uint32 per
dim, then the uint8 data in C order.
"""

import functools
import gzip
import os

import numpy as np
import tensorflow as tf

from simclr_tf.data.source import (
    FASHION_MNIST_OFFLINE,
    DataSourceError,
    Source,
    SourceConfig,
    shard_every_nth,
)

DEFAULT_IDX_DIR = "/usr/share/datasets/fashion-mnist"
IMAGES_MAGIC = 2051  # uint8, 3 dims: count, rows, cols
LABELS_MAGIC = 2049  # uint8, 1 dim: count
IMAGE_SIZE = 28
NUM_CLASSES = 10
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
# split -> (images file, labels file, number of examples)
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}


def read_idx(path: str, expected_magic: int) -> np.ndarray:
    """The uint8 array stored in a gzip IDX file, after checking magic and size."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # missing, unreadable, not gzip, truncated gzip
        raise DataSourceError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4:
        raise DataSourceError(f"IDX file {path} is too short for a header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataSourceError(
            f"IDX file {path} has magic number {magic}, expected {expected_magic}"
        )
    num_dims = magic & 0xFF
    header_size = 4 + 4 * num_dims
    if len(data) < header_size:
        raise DataSourceError(f"IDX file {path} is truncated inside its header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=num_dims, offset=4))
    expected_size = header_size + int(np.prod(dims))
    if len(data) != expected_size:
        raise DataSourceError(
            f"IDX file {path} holds {len(data)} bytes, expected {expected_size} for dims {dims}"
        )
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(dims)


@functools.lru_cache(maxsize=None)
def load_fashion_mnist(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28, 1], labels uint8 [N]) of one split, parsed once per process.

    The arrays are shared between callers through the cache, hence read-only.
    """
    if split not in SPLIT_FILES:
        raise DataSourceError(
            f"{FASHION_MNIST_OFFLINE} has splits {sorted(SPLIT_FILES)}, got split {split!r}"
        )
    images_file, labels_file, num_examples = SPLIT_FILES[split]
    images_path = os.path.join(directory, images_file)
    labels_path = os.path.join(directory, labels_file)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape != (num_examples, IMAGE_SIZE, IMAGE_SIZE):
        raise DataSourceError(
            f"IDX file {images_path} has shape {images.shape}, "
            f"expected {(num_examples, IMAGE_SIZE, IMAGE_SIZE)}"
        )
    if labels.shape != (num_examples,):
        raise DataSourceError(
            f"IDX file {labels_path} has {labels.shape[0]} labels, expected {num_examples}"
        )
    if labels.max() >= NUM_CLASSES:
        raise DataSourceError(
            f"IDX file {labels_path} has label {labels.max()}, expected < {NUM_CLASSES}"
        )
    return images[..., np.newaxis], labels  # np.frombuffer arrays are read-only


def build_fashion_mnist_source(config: SourceConfig) -> Source:
    """Fashion-MNIST read from IDX files in `config.data_dir` (default Debian's copy).

    Pipeline k of n yields examples k, k + n, ...; index is the position in the file.
    Images stay 28x28x1 in memory and become RGB in the dataset map.
    """
    directory = os.path.abspath(config.data_dir or DEFAULT_IDX_DIR)
    images, labels = load_fashion_mnist(directory, config.split)

    def make_dataset(input_context: tf.distribute.InputContext | None) -> tf.data.Dataset:
        indices = np.arange(len(labels), dtype=np.int64)
        ds = tf.data.Dataset.from_tensor_slices((indices, images, labels))
        ds = shard_every_nth(ds, input_context)
        ds = ds.map(
            lambda index, image, label: (
                index,
                tf.image.grayscale_to_rgb(image),
                tf.cast(label, tf.int64),
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return ds

    return Source(
        name=FASHION_MNIST_OFFLINE,
        num_examples=len(labels),
        num_classes=NUM_CLASSES,
        make_dataset=make_dataset,
        class_names=CLASS_NAMES,
    )
