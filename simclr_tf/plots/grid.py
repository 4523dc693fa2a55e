"""Image grids as PNG: rows are examples, columns are the original and its views."""

import os
import tempfile

import numpy as np
from PIL import Image, ImageDraw

from simclr_tf.preview_views import preview_rows

HEADER_HEIGHT = 18
GAP = 4


def image_grid(rows: np.ndarray, column_titles: list[str], cell_size: int) -> Image.Image:
    """`rows` is [num_rows, num_columns, H, W, 3] float in [0, 1]; each cell is scaled
    (nearest neighbour, so pixels stay visible) to `cell_size` px and titled."""
    if rows.ndim != 5 or rows.shape[-1] != 3:
        raise ValueError(f"rows must be [rows, columns, H, W, 3], got shape {rows.shape}")
    num_rows, num_columns = rows.shape[:2]
    if len(column_titles) != num_columns:
        raise ValueError(f"{len(column_titles)} column_titles for {num_columns} columns")
    width = num_columns * (cell_size + GAP) + GAP
    height = HEADER_HEIGHT + num_rows * (cell_size + GAP) + GAP
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(column_titles):
        draw.text((GAP + c * (cell_size + GAP) + 2, 3), title, fill="black")
    pixels = (np.clip(rows, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    for r in range(num_rows):
        for c in range(num_columns):
            cell = Image.fromarray(pixels[r, c]).resize((cell_size, cell_size), Image.NEAREST)
            canvas.paste(cell, (GAP + c * (cell_size + GAP), HEADER_HEIGHT + GAP + r * (cell_size + GAP)))
    return canvas


def grid_size(num_images: int, num_views: int, cell_size: int) -> tuple[int, int]:
    """(width, height) in px of `augmentation_grid`'s image: columns are the original and the views."""
    return (1 + num_views) * (cell_size + GAP) + GAP, HEADER_HEIGHT + num_images * (cell_size + GAP) + GAP


def augmentation_grid(source, config, num_images: int, num_views: int, seed: int, cell_size: int) -> Image.Image:
    """The first `num_images` examples of `source` (a simclr_tf.data.Source), each next to the
    `num_views` views an `AugmentConfig` draws for it in epoch 0 with `seed`."""
    rows = preview_rows(source, config, num_images, num_views, seed)
    return image_grid(rows, ["original"] + [f"view {v + 1}" for v in range(num_views)], cell_size)


def save_png_atomically(image: Image.Image, path: str) -> None:
    """Writes to a temporary file beside `path`, then renames: readers never see half a PNG."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".png.tmp", delete=False) as tmp:
        image.save(tmp, format="PNG")
    # NamedTemporaryFile is private (0600); give the PNG the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp.name, 0o666 & ~umask)
    os.replace(tmp.name, path)
