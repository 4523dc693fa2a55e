"""The pixels of an augmentation preview: each image next to its views."""

import numpy as np

from simclr_tf.augment import AugmentConfig, as_seed, build_pipeline, make_views, preprocess_for_eval, to_unit_float
from simclr_tf.data import Source


def preview_rows(source: Source, config: AugmentConfig, num_images: int, num_views: int, seed: int) -> np.ndarray:
    """[rows, 1 + num_views, size, size, 3] float32: the eval-preprocessed original, then the
    views training would draw for that example in epoch 0 with `seed`."""
    pipeline = build_pipeline(config)
    base_seed = as_seed(seed)
    rows = []
    for index, image, _ in source.make_dataset(None).take(num_images):
        original = preprocess_for_eval(to_unit_float(image), config.image_size)
        views = make_views(pipeline, image, base_seed, 0, index, num_views)
        rows.append(np.concatenate([np.asarray(original)[None], np.asarray(views)]))
    if not rows:
        raise ValueError(f"{source.name} has no examples to preview")
    return np.stack(rows)
