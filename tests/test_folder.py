"""Tests for simclr_tf.data.folder on tiny images written with PIL."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from simclr_tf.data import DataSourceError, SourceConfig, build_source
from simclr_tf.data import folder

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, (6, 4), dtype=np.uint8)
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 8, 7]], np.uint8)
PALETTE_INDICES = RNG.integers(0, 4, (3, 5), dtype=np.uint8)
RGBA = RNG.integers(0, 256, (4, 3, 4), dtype=np.uint8)
GRAY16 = RNG.integers(0, 65536, (3, 4), dtype=np.uint16)
# A smooth image, so JPEG's loss stays small.
_ROWS, _COLS = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
SMOOTH = np.stack([_ROWS * 16, _COLS * 8, np.full((16, 16), 128)], axis=-1).astype(np.uint8)


def _palette_image(indices: np.ndarray) -> Image.Image:
    image = Image.fromarray(indices, "P")
    image.putpalette(PALETTE.ravel().tolist())
    return image


def _save(image: Image.Image, path) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path)
    return str(path)


GRAY_RGB = np.repeat(GRAY[..., None], 3, axis=-1)
PALETTE_RGB = PALETTE[PALETTE_INDICES]
# 16-bit PNG: decode_image keeps the high byte of each sample.
GRAY16_RGB = np.repeat((GRAY16 >> 8)[..., None], 3, axis=-1).astype(np.uint8)

# relative path -> (how to write it, expected RGB pixels, exact?)
FILES = {
    "cats/a_rgb.jpg": (lambda: Image.fromarray(SMOOTH), SMOOTH, False),
    "cats/b_gray.png": (lambda: Image.fromarray(GRAY, "L"), GRAY_RGB, True),
    "cats/c_cmyk.JPEG": (lambda: Image.fromarray(SMOOTH).convert("CMYK"), SMOOTH, False),
    "dogs/d_palette.png": (lambda: _palette_image(PALETTE_INDICES), PALETTE_RGB, True),
    "dogs/e_rgba.PNG": (lambda: Image.fromarray(RGBA, "RGBA"), RGBA[..., :3], True),
    "dogs/f_rgb.bmp": (lambda: Image.fromarray(RGB), RGB, True),
    "dogs/g_palette.bmp": (lambda: _palette_image(PALETTE_INDICES), PALETTE_RGB, True),
    "dogs/h_gray.bmp": (lambda: Image.fromarray(GRAY, "L"), GRAY_RGB, True),
    "dogs/nested/i_palette.gif": (lambda: _palette_image(PALETTE_INDICES), PALETTE_RGB, True),
    "dogs/j_gray16.png": (lambda: Image.fromarray(GRAY16), GRAY16_RGB, True),
}
LABELS = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]  # cats = 0, dogs = 1


@pytest.fixture(scope="module")
def class_tree(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("class_tree")
    for relative, (make, _, _) in FILES.items():
        _save(make(), root / relative)
    (root / "dogs" / "notes.txt").write_text("not an image")
    _save(Image.fromarray(RGB), root / ".hidden" / "skipped.png")
    return str(root)


def _collect(ds: tf.data.Dataset) -> list[tuple[int, np.ndarray, int]]:
    return [(int(i), image.numpy(), int(label)) for i, image, label in ds]


def test_every_format_decodes_to_uint8_rgb_with_the_written_pixels(class_tree):
    source = build_source(SourceConfig(dataset=f"folder:{class_tree}"))
    ds = source.make_dataset(None)
    assert ds.element_spec[1] == tf.TensorSpec([None, None, 3], tf.uint8)
    examples = _collect(ds)

    assert [i for i, _, _ in examples] == list(range(len(FILES)))  # sorted path order
    for (relative, (_, expected, exact)), (_, image, _) in zip(sorted(FILES.items()), examples):
        assert image.dtype == np.uint8 and image.shape == expected.shape, relative
        if exact:
            np.testing.assert_array_equal(image, expected, err_msg=relative)
        else:
            assert np.abs(image.astype(int) - expected).mean() < 4, relative


def test_labels_follow_sorted_class_folder_names(class_tree):
    source = build_source(SourceConfig(dataset=class_tree))  # a plain path works too
    assert source.name == f"folder:{class_tree}"
    assert (source.num_examples, source.num_classes) == (len(FILES), 2)
    assert source.class_names == ("cats", "dogs")
    assert [label for _, _, label in _collect(source.make_dataset(None))] == LABELS


def test_flat_folder_is_unlabeled(tmp_path):
    for name in ["b.png", "a.bmp", "c.gif"]:
        _save(_palette_image(PALETTE_INDICES), tmp_path / name)
    source = build_source(SourceConfig(dataset=f"folder:{tmp_path}"))
    assert (source.num_classes, source.class_names) == (None, None)
    examples = _collect(source.make_dataset(None))
    assert [label for _, _, label in examples] == [-1, -1, -1]
    listing = folder.list_image_folder(str(tmp_path))
    assert [os.path.basename(p) for p in listing.paths] == ["a.bmp", "b.png", "c.gif"]


def test_order_is_deterministic(class_tree):
    source = build_source(SourceConfig(dataset=class_tree))
    first, second = _collect(source.make_dataset(None)), _collect(source.make_dataset(None))
    assert [i for i, _, _ in first] == [i for i, _, _ in second]
    for (_, a, _), (_, b, _) in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_two_pipelines_get_disjoint_shards_covering_everything(class_tree):
    source = build_source(SourceConfig(dataset=class_tree))
    everything = {i: image for i, image, _ in _collect(source.make_dataset(None))}
    shards = []
    for k in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=k)
        shard = _collect(source.make_dataset(context))
        assert [i for i, _, _ in shard] == list(range(k, len(FILES), 2))
        for i, image, label in shard:
            np.testing.assert_array_equal(image, everything[i])
            assert label == LABELS[i]
        shards.append({i for i, _, _ in shard})
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(everything)


def test_decode_eagerly_matches_decode_in_tf_data(class_tree):
    path = os.path.join(class_tree, "dogs", "g_palette.bmp")
    eager = folder.decode_image_rgb(tf.io.read_file(path), path).numpy()
    in_map = next(iter(tf.data.Dataset.from_tensors(path).map(
        lambda p: folder.decode_image_rgb(tf.io.read_file(p), p)))).numpy()  # fmt: skip
    np.testing.assert_array_equal(eager, PALETTE_RGB)
    np.testing.assert_array_equal(in_map, eager)


def test_file_that_is_not_an_image_fails_naming_it(tmp_path):
    (tmp_path / "fake.png").write_text("plain text")
    # Caught when the source is built (tests/test_bad_input_data.py has every bad-file case)...
    with pytest.raises(DataSourceError, match="fake.png: not a JPEG"):
        build_source(SourceConfig(dataset=str(tmp_path)))
    # ...and by the decoder too, should a file change after the listing was checked.
    with pytest.raises(tf.errors.InvalidArgumentError, match="fake.png"):
        folder.decode_image_rgb(tf.constant(b"plain text"), "fake.png")


def test_empty_missing_and_mixed_folders_raise_naming_the_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(DataSourceError, match=f"{re.escape(str(empty))}.*holds no images"):
        build_source(SourceConfig(dataset=f"folder:{empty}"))

    missing = tmp_path / "missing"
    with pytest.raises(DataSourceError, match=re.escape(str(missing))):
        build_source(SourceConfig(dataset=f"folder:{missing}"))
    with pytest.raises(DataSourceError, match=re.escape(str(missing))):  # a path, not a tfds name
        build_source(SourceConfig(dataset=str(missing)))

    mixed = tmp_path / "mixed"
    _save(Image.fromarray(RGB), mixed / "root.png")
    _save(Image.fromarray(RGB), mixed / "cls" / "x.png")
    with pytest.raises(DataSourceError, match=f"{re.escape(str(mixed))} mixes images"):
        build_source(SourceConfig(dataset=f"folder:{mixed}"))

    (mixed / "root.png").unlink()
    (mixed / "empty_class").mkdir()
    with pytest.raises(DataSourceError, match="empty_class holds no images"):
        build_source(SourceConfig(dataset=f"folder:{mixed}"))


def test_split_and_data_dir_are_rejected(class_tree):
    with pytest.raises(DataSourceError, match="'test'"):
        build_source(SourceConfig(dataset=class_tree, split="test"))
    with pytest.raises(DataSourceError, match="data_dir"):
        build_source(SourceConfig(dataset=class_tree, data_dir="/tmp"))
