"""Tests for simclr_tf.data.idx against Debian's Fashion-MNIST IDX files."""

import gzip
import os

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf.data import DataSourceError, SourceConfig, build_source
from simclr_tf.data import idx

# Bytes 8..17 of the label files (after the 8-byte header), read without idx.py.
FIRST_TRAIN_LABELS = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
FIRST_TEST_LABELS = [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]

pytestmark = pytest.mark.skipif(
    not os.path.isdir(idx.DEFAULT_IDX_DIR), reason="Debian dataset-fashion-mnist not installed"
)


def _first(ds: tf.data.Dataset, n: int) -> list[tuple[int, np.ndarray, int]]:
    return [(int(i), image.numpy(), int(label)) for i, image, label in ds.take(n)]


@pytest.mark.parametrize(
    "split, num_examples, first_labels",
    [("train", 60_000, FIRST_TRAIN_LABELS), ("test", 10_000, FIRST_TEST_LABELS)],
)
def test_split_sizes_shapes_and_first_labels(split, num_examples, first_labels):
    source = build_source(SourceConfig(split=split))
    images, _ = idx.load_fashion_mnist(idx.DEFAULT_IDX_DIR, split)

    assert (source.num_examples, source.num_classes) == (num_examples, 10)
    assert len(source.class_names) == 10
    assert images.shape == (num_examples, 28, 28, 1)
    ds = source.make_dataset(None)
    assert ds.element_spec == (
        tf.TensorSpec([], tf.int64),
        tf.TensorSpec([28, 28, 3], tf.uint8),
        tf.TensorSpec([], tf.int64),
    )
    assert int(ds.cardinality()) == num_examples
    first = _first(ds, 10)
    assert [i for i, _, _ in first] == list(range(10))
    assert [label for _, _, label in first] == first_labels
    for i, image, _ in first:  # grayscale repeated into R, G and B
        np.testing.assert_array_equal(image, np.repeat(images[i], 3, axis=-1))


def test_parsed_arrays_are_cached_per_process():
    first = idx.load_fashion_mnist(idx.DEFAULT_IDX_DIR, "train")
    second = idx.load_fashion_mnist(idx.DEFAULT_IDX_DIR, "train")
    assert first[0] is second[0] and first[1] is second[1]
    assert not first[0].flags.writeable  # shared through the cache


def test_pipeline_k_of_2_gets_examples_k_k_plus_2_and_so_on():
    source = build_source(SourceConfig(split="test"))
    images, labels = idx.load_fashion_mnist(idx.DEFAULT_IDX_DIR, "test")
    seen = []
    for k in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=k)
        ds = source.make_dataset(context)
        first = _first(ds, 4)
        assert [i for i, _, _ in first] == [k, k + 2, k + 4, k + 6]
        for i, image, label in first:
            np.testing.assert_array_equal(image[..., 0], images[i, ..., 0])
            assert label == labels[i]
        indices = np.concatenate([b[0].numpy() for b in ds.batch(5_000)])
        np.testing.assert_array_equal(indices, np.arange(k, 10_000, 2))
        seen.append(indices)
    assert not set(seen[0]) & set(seen[1])
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(10_000))


def _write_gz(path, data: bytes) -> str:
    with gzip.open(path, "wb") as f:
        f.write(data)
    return str(path)


def _idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return np.array([magic, *dims], ">u4").tobytes() + payload


@pytest.mark.parametrize(
    "name, data",
    [
        ("bad_magic", _idx_bytes(2049, (2, 28, 28), bytes(2 * 28 * 28))),
        ("truncated", _idx_bytes(2051, (2, 28, 28), bytes(28 * 28 + 5))),
        ("trailing", _idx_bytes(2051, (1, 28, 28), bytes(28 * 28 + 1))),
        ("header_only", b"\x00\x00"),
    ],
)
def test_corrupt_idx_file_raises_naming_the_file(tmp_path, name, data):
    path = _write_gz(tmp_path / f"{name}-idx3-ubyte.gz", data)
    with pytest.raises(DataSourceError, match=name):
        idx.read_idx(path, idx.IMAGES_MAGIC)


def test_truncated_gzip_and_missing_file_raise_naming_the_file(tmp_path):
    path = _write_gz(tmp_path / "images.gz", _idx_bytes(2051, (3, 28, 28), bytes(3 * 28 * 28)))
    with open(path, "rb") as f:
        head = f.read(20)
    with open(path, "wb") as f:
        f.write(head)
    with pytest.raises(DataSourceError, match="images.gz"):
        idx.read_idx(path, idx.IMAGES_MAGIC)
    with pytest.raises(DataSourceError, match="nothing-here.gz"):
        idx.read_idx(str(tmp_path / "nothing-here.gz"), idx.IMAGES_MAGIC)


def test_wrong_example_count_raises_naming_the_file(tmp_path):
    # Well-formed IDX files with 3 examples where the test split must have 10,000.
    _write_gz(tmp_path / "t10k-images-idx3-ubyte.gz", _idx_bytes(2051, (3, 28, 28), bytes(2352)))
    _write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", _idx_bytes(2049, (3,), bytes(3)))
    with pytest.raises(DataSourceError, match="t10k-images-idx3-ubyte.gz"):
        build_source(SourceConfig(split="test", data_dir=str(tmp_path)))


def test_unknown_split_raises_naming_it():
    with pytest.raises(DataSourceError, match="'validation'"):
        build_source(SourceConfig(split="validation"))
