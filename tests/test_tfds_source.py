"""Tests for simclr_tf.data.tfds_source, offline: tfds mocks and a tiny prepared dataset."""

import re
import socket

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from simclr_tf.data import DataSourceError, SourceConfig, build_source
from simclr_tf.data.tfds_source import build_tfds_source

NUM_TRAIN, NUM_TEST = 10, 3


class SimclrTestGray(tfds.core.GeneratorBasedBuilder):
    """Example i: a 4x4 grayscale image filled with i, label i % 3."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(4, 4, 1)),
                    "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, NUM_TRAIN),
                "test": self._generate_examples(100, NUM_TEST)}  # fmt: skip

    def _generate_examples(self, start, count):
        for i in range(start, start + count):
            yield i, {"image": np.full((4, 4, 1), i, np.uint8), "label": i % 3}


class SimclrTestRgbaUnlabeled(tfds.core.GeneratorBasedBuilder):
    """Example i: a 2x2 RGBA image (i, 1, 2, 3); no label feature."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(2, 2, 4))}),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(4):
            yield i, {"image": np.tile(np.array([i, 1, 2, 3], np.uint8), (2, 2, 1))}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    """Both tiny datasets prepared; train in 3 files so reads cross file boundaries."""
    root = str(tmp_path_factory.mktemp("tfds"))
    for name in ["simclr_test_gray", "simclr_test_rgba_unlabeled"]:
        tfds.builder(name, data_dir=root).download_and_prepare(
            download_config=tfds.download.DownloadConfig(num_shards=3)
        )
    return root


def _collect(ds: tf.data.Dataset) -> list[tuple[int, np.ndarray, int]]:
    return [(int(i), image.numpy(), int(label)) for i, image, label in ds]


def _context(k: int, n: int) -> tf.distribute.InputContext:
    return tf.distribute.InputContext(num_input_pipelines=n, input_pipeline_id=k)


@pytest.mark.parametrize(
    "dataset, split, shape, num_classes",
    [
        ("cifar10", "train", (32, 32, 3), 10),
        ("stl10", "unlabelled", (96, 96, 3), None),
        ("imagenet2012_subset/1pct", "train", (None, None, 3), 1000),
    ],
)
def test_mocked_tfds_datasets_yield_index_uint8_rgb_and_label(dataset, split, shape, num_classes):
    # mock_data leaves builders unprepared; download=True reaches its no-op download_and_prepare.
    with tfds.testing.mock_data(num_examples=4):
        source = build_source(SourceConfig(dataset=dataset, split=split, download=True))
        ds = source.make_dataset(None)
        examples = _collect(ds)
    assert ds.element_spec == (
        tf.TensorSpec([], tf.int64),
        tf.TensorSpec(shape, tf.uint8),
        tf.TensorSpec([], tf.int64),
    )
    assert (source.name, source.num_examples, source.num_classes) == (dataset, 4, num_classes)
    assert [i for i, _, _ in examples] == [0, 1, 2, 3]
    for _, image, label in examples:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
        if num_classes is None:
            assert label == -1
        else:
            assert 0 <= label < num_classes


def test_prepared_dataset_gives_images_labels_and_split_sizes(data_dir):
    source = build_source(SourceConfig(dataset="simclr_test_gray", data_dir=data_dir))
    assert (source.num_examples, source.num_classes) == (NUM_TRAIN, 3)
    assert source.class_names == ("a", "b", "c")
    examples = _collect(source.make_dataset(None))
    assert [i for i, _, _ in examples] == list(range(NUM_TRAIN))
    ids = sorted(int(image[0, 0, 0]) for _, image, _ in examples)
    assert ids == list(range(NUM_TRAIN))
    for _, image, label in examples:  # gray -> RGB, and the label belongs to the image
        assert image.shape == (4, 4, 3) and (image == image[0, 0, 0]).all()
        assert label == image[0, 0, 0] % 3
    for split, expected in [("train[:50%]", 5), ("train+test", 13), ("test", 3)]:
        config = SourceConfig(dataset="simclr_test_gray", split=split, data_dir=data_dir)
        assert build_source(config).num_examples == expected, split


@pytest.mark.parametrize("split, num_pipelines", [("train", 2), ("train", 3), ("train+test", 2)])
def test_pipelines_get_disjoint_shards_covering_everything(data_dir, split, num_pipelines):
    config = SourceConfig(dataset="simclr_test_gray", split=split, data_dir=data_dir)
    source = build_source(config)
    shards = [_collect(source.make_dataset(_context(k, num_pipelines)))
              for k in range(num_pipelines)]  # fmt: skip
    indices = [i for shard in shards for i, _, _ in shard]
    ids = [int(image[0, 0, 0]) for shard in shards for _, image, _ in shard]
    all_ids = [int(image[0, 0, 0]) for _, image, _ in _collect(source.make_dataset(None))]
    assert sorted(indices) == list(range(source.num_examples))  # unique, none missing
    assert sorted(ids) == sorted(all_ids)  # every example once
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= (1 if "+" not in split else 2)


def test_missing_label_feature_gives_minus_one_and_rgba_drops_alpha(data_dir):
    source = build_source(SourceConfig(dataset="simclr_test_rgba_unlabeled", data_dir=data_dir))
    assert (source.num_classes, source.class_names) == (None, None)
    examples = _collect(source.make_dataset(None))
    assert [label for _, _, label in examples] == [-1] * 4
    assert sorted(tuple(image[0, 0]) for _, image, _ in examples) == [(i, 1, 2) for i in range(4)]


def test_not_prepared_dataset_raises_naming_it_and_data_dir(tmp_path):
    data_dir = re.escape(str(tmp_path))
    for dataset in ["cifar10", "simclr_test_gray"]:
        expected = f"'{dataset}' is not prepared in {data_dir}.*tfds build {dataset}"
        with pytest.raises(DataSourceError, match=expected):
            build_tfds_source(SourceConfig(dataset=dataset, data_dir=str(tmp_path)))


def test_unknown_dataset_config_and_split_raise_naming_them(data_dir, tmp_path):
    with pytest.raises(DataSourceError, match="'no_such_dataset_xyz'"):
        build_source(SourceConfig(dataset="no_such_dataset_xyz", data_dir=str(tmp_path)))
    with pytest.raises(DataSourceError, match="'imagenet2012_subset/2pct'"):
        build_source(SourceConfig(dataset="imagenet2012_subset/2pct", data_dir=str(tmp_path)))
    with pytest.raises(DataSourceError, match="'validation'"):
        config = SourceConfig(dataset="simclr_test_gray", split="validation", data_dir=data_dir)
        build_source(config)
