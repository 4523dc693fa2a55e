"""Each bad input the README's failure table lists has its defined outcome: an error naming the
file (before training starts), or a documented, counted skip, or a defined conversion."""

import io

import numpy as np
import pytest
from PIL import Image

from simclr_tf.augment import AugmentConfig
from simclr_tf.data import DataSourceError, SourceConfig, build_source
from simclr_tf.input_pipeline import pretrain_dataset

COLOR = np.array([200, 50, 100], np.uint8)


def save(path, array, mode=None, format=None, **kwargs):
    Image.fromarray(array, mode).save(path, format, **kwargs)


def jpeg_bytes(size=8, mode="RGB"):
    buffer = io.BytesIO()
    Image.fromarray(np.broadcast_to(COLOR, (size, size, 3)).copy()).convert(mode).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path):
    """Two good images; each test adds one bad one."""
    root = tmp_path / "images"
    root.mkdir()
    for name in ("a.png", "b.png"):
        save(root / name, np.broadcast_to(COLOR, (8, 8, 3)).copy())
    return root


def decoded(root, **config):
    source = build_source(SourceConfig(dataset=f"folder:{root}", **config))
    return source, [image.numpy() for _, image, _ in source.make_dataset(None)]


BAD_FILES = {
    "truncated.jpg": (lambda: jpeg_bytes(64)[:-200], "truncated JPEG"),
    "zero_bytes.jpg": (lambda: b"", "empty file"),
    "text.jpg": (lambda: b"this is not an image\n" * 10, "not a JPEG, PNG, GIF or BMP"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_stops_before_training_naming_it(folder, name):
    make, reason = BAD_FILES[name]
    (folder / name).write_bytes(make())
    with pytest.raises(DataSourceError, match=f"{folder / name}: {reason}.*SourceConfig.bad_files to 'skip'"):
        build_source(SourceConfig(dataset=f"folder:{folder}"))


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_is_skipped_and_counted_when_asked(folder, name):
    make, reason = BAD_FILES[name]
    (folder / name).write_bytes(make())
    source, images = decoded(folder, bad_files="skip")
    assert source.num_examples == 2 and len(images) == 2
    assert len(source.skipped) == 1 and source.skipped[0].startswith(f"{folder / name}: {reason}")


def test_one_by_one_image_gives_full_size_views(folder):
    save(folder / "c_tiny.png", COLOR[None, None, :].copy())
    source, images = decoded(folder)
    assert images[2].shape == (1, 1, 3)
    views, _ = next(iter(pretrain_dataset(source, AugmentConfig.for_image_size(16), 3, shuffle_buffer=1)))
    assert views.shape == (3, 2, 16, 16, 3) and np.isfinite(views.numpy()).all()


def test_sixteen_bit_png_keeps_the_high_byte(folder):
    gray16 = np.array([[0, 257, 65535, 40000]], np.uint16)
    Image.fromarray(gray16).save(folder / "c_16bit.png")
    _, images = decoded(folder)
    np.testing.assert_array_equal(images[2][..., 0], gray16 >> 8)


def test_cmyk_jpeg_is_converted_to_rgb(folder):
    (folder / "c_cmyk.jpg").write_bytes(jpeg_bytes(8, "CMYK"))
    _, images = decoded(folder)
    np.testing.assert_allclose(images[2].reshape(-1, 3), np.broadcast_to(COLOR, (64, 3)), atol=3)


@pytest.mark.parametrize("mode", ["RGBA", "P"])
def test_rgba_and_palette_png_become_rgb_with_alpha_dropped(folder, mode):
    image = Image.fromarray(np.broadcast_to(COLOR, (4, 4, 3)).copy())
    image = image.convert("RGBA") if mode == "RGBA" else image.convert("P", palette=Image.Palette.ADAPTIVE)
    if mode == "RGBA":
        image.putalpha(0)  # Fully transparent: alpha is dropped, not composited.
    image.save(folder / "c.png")
    _, images = decoded(folder)
    assert images[2].shape == (4, 4, 3)
    np.testing.assert_array_equal(images[2].reshape(-1, 3), np.broadcast_to(COLOR, (16, 3)))


def test_empty_folder_names_it(tmp_path):
    with pytest.raises(DataSourceError, match=f"image folder {tmp_path} holds no images"):
        build_source(SourceConfig(dataset=f"folder:{tmp_path}"))


def test_missing_tfds_dataset_offline_says_how_to_prepare_it(tmp_path):
    with pytest.raises(DataSourceError, match=r"'mnist' is not prepared in .*tfds build mnist --data_dir="):
        build_source(SourceConfig(dataset="mnist", data_dir=str(tmp_path)))
