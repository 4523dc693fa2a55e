"""Images from a local folder: class sub-folders give labels, a flat folder none.

Layout `root/<class>/**/<image>` (ImageNet-style, sub-folders sorted by name ->
labels 0..K-1) or `root/<image>` (unlabeled, label -1). Hidden entries (".x")
are skipped; other non-image files are ignored.
"""

import concurrent.futures
import dataclasses
import os

import numpy as np
import tensorflow as tf

from simclr_tf.data.source import (
    FOLDER_PREFIX,
    DataSourceError,
    Source,
    SourceConfig,
    shard_every_nth,
)

IMAGE_EXTENSIONS = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png"})
# First bytes of each format tf.io.decode_image reads.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")
_BMP_HEADER_SIZE = 54  # 14-byte file header + 40-byte BITMAPINFOHEADER
# Writers may pad after a JPEG's end-of-image marker; look for it this far from the end.
_TAIL_BYTES = 1024


@dataclasses.dataclass(frozen=True)
class FolderListing:
    """Every image under a folder, in sorted path order."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]  # -1 for a flat folder
    class_names: tuple[str, ...] | None  # None for a flat folder


def folder_path(dataset: str) -> str:
    """The absolute directory named by "folder:/path" or a plain path."""
    path = dataset.removeprefix(FOLDER_PREFIX)
    return os.path.abspath(os.path.expanduser(path))


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _images_under(directory: str) -> list[str]:
    """Image files anywhere below `directory`, sorted by relative path."""
    found = []
    for parent, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(parent, f) for f in sorted(filenames) if _is_image(f))
    return found


def list_image_folder(root: str) -> FolderListing:
    """Lists `root` as a class-folder tree or a flat folder; mixing both is an error."""
    try:
        entries = sorted(
            (e for e in os.scandir(root) if not e.name.startswith(".")), key=lambda e: e.name
        )
    except OSError as e:  # missing, not a directory, no permission
        raise DataSourceError(f"cannot list image folder {root}: {e}") from e
    files = [e.path for e in entries if e.is_file() and _is_image(e.name)]
    class_dirs = [e for e in entries if e.is_dir()]
    if files and class_dirs:
        raise DataSourceError(
            f"image folder {root} mixes images at its root ({os.path.basename(files[0])}, ...) "
            f"with sub-folders ({class_dirs[0].name}, ...); use either class sub-folders or "
            "a flat folder of images"
        )
    if files:
        return FolderListing(tuple(files), (-1,) * len(files), None)
    if not class_dirs:
        raise DataSourceError(
            f"image folder {root} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        class_paths = _images_under(class_dir.path)
        if not class_paths:
            raise DataSourceError(f"class folder {class_dir.path} holds no images")
        paths.extend(class_paths)
        labels.extend([label] * len(class_paths))
    return FolderListing(tuple(paths), tuple(labels), tuple(e.name for e in class_dirs))


def inspect_image_file(path: str) -> str | None:
    """Why a file cannot be an intact image, or None; from its size and first and last bytes.

    No decoding, so a million-file folder is checked in seconds before a run starts
    instead of failing (or being silently cut short) hours into it: a truncated JPEG
    lacks its end-of-image marker and a truncated PNG its IEND chunk (TF's decoders
    would otherwise fail mid-run on them).
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file (0 bytes)"
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read()
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if head.startswith(b"\xff\xd8\xff"):
        return None if b"\xff\xd9" in tail else "truncated JPEG (no end-of-image marker)"
    if head.startswith(b"\x89PNG"):
        return None if b"IEND" in tail else "truncated PNG (no IEND chunk)"
    if head.startswith((b"GIF8", b"BM")):
        return None
    return "not a JPEG, PNG, GIF or BMP file"


def _drop_bad_files(listing: FolderListing, root: str, policy: str) -> tuple[FolderListing, tuple[str, ...]]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        problems = list(pool.map(inspect_image_file, listing.paths))
    bad = [f"{path}: {problem}" for path, problem in zip(listing.paths, problems) if problem]
    if not bad:
        return listing, ()
    if policy == "error":
        raise DataSourceError(
            f"{len(bad)} of {len(listing.paths)} files under {root} are not intact images, e.g. {bad[0]}; "
            "fix or remove them, or set SourceConfig.bad_files to 'skip' to leave them out"
        )
    keep = [i for i, problem in enumerate(problems) if not problem]
    if not keep:
        raise DataSourceError(f"no intact image under {root} ({len(bad)} bad files, e.g. {bad[0]})")
    kept = FolderListing(
        tuple(listing.paths[i] for i in keep), tuple(listing.labels[i] for i in keep), listing.class_names
    )
    return kept, tuple(bad)


def _little_endian_int(contents: tf.Tensor, offset: int | tf.Tensor, size: int) -> tf.Tensor:
    dtype = {2: tf.uint16, 4: tf.int32}[size]
    raw = tf.io.decode_raw(tf.strings.substr(contents, offset, size), dtype, little_endian=True)
    return tf.cast(raw[0], tf.int32)


def _decode_8bit_bmp(contents: tf.Tensor) -> tf.Tensor:
    """8-bit BMPs through their colour table: tf.io.decode_bmp returns the raw indices."""
    dib_header_size = _little_endian_int(contents, 14, 4)
    colors_used = _little_endian_int(contents, 46, 4)
    num_colors = tf.where(colors_used == 0, 256, colors_used)
    table = tf.io.decode_raw(
        tf.strings.substr(contents, 14 + dib_header_size, 4 * num_colors), tf.uint8
    )
    rgb_table = tf.reshape(table, [-1, 4])[:, 2::-1]  # stored as B, G, R, reserved
    indices = tf.io.decode_bmp(contents, channels=0)[..., 0]
    return tf.gather(rgb_table, tf.cast(indices, tf.int32))


def _decode_any(contents: tf.Tensor) -> tf.Tensor:
    return tf.io.decode_image(contents, channels=3, expand_animations=False)


def decode_image_rgb(contents: tf.Tensor, path: tf.Tensor | str = "<bytes>") -> tf.Tensor:
    """uint8 [H, W, 3] from JPEG, PNG, GIF (first frame) or BMP bytes.

    Grayscale and palette images are expanded to RGB, alpha is dropped (not
    composited), 16-bit PNGs keep the high byte of each sample (x >> 8, libpng's
    conversion; within 1 of round(x / 257)). An unknown format fails naming `path`.
    """
    known = tf.reduce_any([tf.strings.substr(contents, 0, len(s)) == s for s in _SIGNATURES])
    check = tf.debugging.Assert(known, ["not a JPEG, PNG, GIF or BMP file:", path])
    with tf.control_dependencies([check]):
        is_bmp = tf.logical_and(
            tf.strings.substr(contents, 0, 2) == b"BM",
            tf.strings.length(contents) >= _BMP_HEADER_SIZE,
        )
    is_8bit_bmp = tf.cond(
        is_bmp, lambda: _little_endian_int(contents, 28, 2) == 8, lambda: tf.constant(False)
    )
    image = tf.cond(is_8bit_bmp, lambda: _decode_8bit_bmp(contents), lambda: _decode_any(contents))
    image.set_shape([None, None, 3])
    return image


def build_folder_source(config: SourceConfig) -> Source:
    """Images under the folder named by `config.dataset`; sizes may differ per image.

    Pipeline k of n yields examples k, k + n, ...; index is the position in the
    sorted listing, so it does not depend on the number of pipelines.
    """
    root = folder_path(config.dataset)
    if config.split != "train":
        raise DataSourceError(
            f"image folder {root} has no splits, got split {config.split!r}; "
            "point dataset at another folder instead"
        )
    if config.data_dir is not None:
        raise DataSourceError(
            f"image folder {root} takes no data_dir, got data_dir {config.data_dir!r}"
        )
    listing, skipped = _drop_bad_files(list_image_folder(root), root, config.bad_files)
    num_examples = len(listing.paths)

    def make_dataset(input_context: tf.distribute.InputContext | None) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices(
            (
                np.arange(num_examples, dtype=np.int64),
                np.array(listing.paths),
                np.array(listing.labels, dtype=np.int64),
            )
        )
        ds = shard_every_nth(ds, input_context)
        return ds.map(
            lambda index, path, label: (
                index,
                decode_image_rgb(tf.io.read_file(path), path),
                label,
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    return Source(
        name=FOLDER_PREFIX + root,
        num_examples=num_examples,
        num_classes=None if listing.class_names is None else len(listing.class_names),
        make_dataset=make_dataset,
        class_names=listing.class_names,
        skipped=skipped,
    )
