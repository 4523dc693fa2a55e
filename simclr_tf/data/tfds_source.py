"""Any TensorFlow Datasets image dataset already prepared in a data_dir.

Nothing is downloaded unless `SourceConfig.download` is set: a missing dataset
fails at once with the command that prepares it.
"""

from __future__ import annotations

import types

import tensorflow as tf

from simclr_tf.data.source import (
    DataSourceError,
    Source,
    SourceConfig,
    pipeline_shard,
)

IMAGE_KEY = "image"
LABEL_KEY = "label"
# Multi-label datasets (voc): every class the image holds, and those with an object not marked difficult.
LABELS_KEY = "labels"
LABELS_NOT_DIFFICULT_KEY = "labels_no_difficult"
# tfds splits whose examples carry no label (stl10 stores -1 there).
UNLABELED_SPLITS = frozenset({"unlabelled", "unlabeled"})


def _tfds() -> types.ModuleType:
    # Imported on first use: tensorflow_datasets takes seconds to import, which runs on the
    # offline and image-folder sources would pay for nothing.
    import tensorflow_datasets

    return tensorflow_datasets


def _split_names(split: str) -> set[str]:
    """Split names in a split expression: "train[:10%]+test" -> {"train", "test"}."""
    return {part.split("[")[0].strip() for part in split.split("+")}


def _count_examples(builder, split) -> int:
    # The dataset's cardinality (which tfds asserts from the split info) rather
    # than builder.info.splits: it resolves split expressions and even_splits
    # alike, and also works under tfds.testing.mock_data.
    return int(builder.as_dataset(split=split).cardinality())


def _make_builder(config: SourceConfig):
    tfds = _tfds()
    name = config.dataset
    try:
        builder = tfds.builder(name, data_dir=config.data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        first_line = str(e).splitlines()[0]
        raise DataSourceError(f"unknown tfds dataset {name!r}: {first_line}") from e
    except ValueError as e:  # e.g. an unknown builder config "imagenet2012_subset/2pct"
        raise DataSourceError(f"cannot build tfds dataset {name!r}: {e}") from e
    if not builder.is_prepared():
        if not config.download:
            data_dir_flag = f" --data_dir={config.data_dir}" if config.data_dir else ""
            raise DataSourceError(
                f"tfds dataset {name!r} is not prepared in {builder.data_dir}; prepare it "
                f"with `tfds build {name}{data_dir_flag}` or set SourceConfig.download=True "
                "to let tfds download it"
            )
        builder.download_and_prepare()
    return builder


def build_tfds_source(config: SourceConfig) -> Source:
    """A tfds dataset's `image` (and `label`, when the split has labels) features.

    Sharding: pipeline k of n reads the k-th of `tfds.even_splits(split, n)`, so
    each pipeline reads only its own records (even from single-file splits such
    as cifar10's, where file-level sharding would starve pipelines). index is
    offset_k + position in that sub-split, offset_k the size of sub-splits 0..k-1:
    unique in [0, num_examples) and fixed for a given split and n. tfds reads
    files interleaved, so with several files per sub-split, or n changed, the
    same index may name another example.
    """
    tfds = _tfds()
    builder = _make_builder(config)
    name, split = config.dataset, config.split
    features = builder.info.features
    if IMAGE_KEY not in features:
        raise DataSourceError(
            f"tfds dataset {name!r} has no {IMAGE_KEY!r} feature (features: {sorted(features)})"
        )
    image_feature = features[IMAGE_KEY]
    channels = image_feature.shape[-1]
    image_dtype = tf.as_dtype(image_feature.dtype)
    if image_dtype != tf.uint8 or channels not in (1, 3, 4):
        raise DataSourceError(
            f"tfds dataset {name!r} image feature is {image_dtype.name} with "
            f"{channels} channels, expected uint8 with 1, 3 or 4"
        )
    if config.multi_label:
        label_feature = _class_sequence(features, LABELS_KEY)
        if label_feature is None:
            raise DataSourceError(f"tfds dataset {name!r} has no {LABELS_KEY!r} sequence of classes, so it cannot be "
                                  f"read as multi-label (SourceConfig.multi_label); features: {sorted(features)}")
        not_difficult = LABELS_NOT_DIFFICULT_KEY if _class_sequence(features, LABELS_NOT_DIFFICULT_KEY) else LABELS_KEY
        labeled = True
    else:
        label_feature = features[LABEL_KEY] if LABEL_KEY in features else None
        labeled = (
            isinstance(label_feature, tfds.features.ClassLabel)
            and not _split_names(split) <= UNLABELED_SPLITS
        )
    try:
        num_examples = _count_examples(builder, split)
    except (ValueError, KeyError) as e:  # unknown split name or bad slice
        raise DataSourceError(f"tfds dataset {name!r} has no split {split!r}: {e}") from e

    def to_triple(index: tf.Tensor, example: dict) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        image = example[IMAGE_KEY]
        if channels == 1:
            image = tf.image.grayscale_to_rgb(image)
        elif channels == 4:
            image = image[..., :3]  # alpha dropped, not composited
        if config.multi_label:
            label = _devkit_ground_truth(example[LABELS_KEY], example[not_difficult], label_feature.num_classes)
        else:
            label = tf.cast(example[LABEL_KEY], tf.int64) if labeled else tf.constant(-1, tf.int64)
        return index, image, label

    def make_dataset(input_context: tf.distribute.InputContext | None) -> tf.data.Dataset:
        num_pipelines, pipeline_id = pipeline_shard(input_context)
        sub_splits = tfds.even_splits(split, num_pipelines) if num_pipelines > 1 else [split]
        offset = sum(_count_examples(builder, s) for s in sub_splits[:pipeline_id])
        ds = builder.as_dataset(split=sub_splits[pipeline_id], shuffle_files=False)
        return ds.enumerate(start=offset).map(
            to_triple, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    return Source(
        name=name,
        num_examples=num_examples,
        num_classes=label_feature.num_classes if labeled else None,
        make_dataset=make_dataset,
        class_names=tuple(label_feature.names) if labeled else None,
        multi_label=config.multi_label,
    )


def _class_sequence(features, key: str):
    """The ClassLabel inside features[key] when that is a Sequence of classes, else None."""
    tfds = _tfds()
    feature = features[key] if key in features else None
    if isinstance(feature, tfds.features.Sequence) and isinstance(feature.feature, tfds.features.ClassLabel):
        return feature.feature
    return None


def _devkit_ground_truth(labels: tf.Tensor, labels_not_difficult: tf.Tensor, num_classes: int) -> tf.Tensor:
    """int64 [num_classes]: 1 for a class with an object not marked difficult, 0 for one whose objects
    are all difficult, -1 for a class absent from the image (the VOC devkit's convention)."""
    def holds(classes):
        return tf.math.bincount(tf.cast(classes, tf.int32), minlength=num_classes, maxlength=num_classes) > 0

    truth = tf.where(holds(labels_not_difficult), tf.constant(1, tf.int64),
                     tf.where(holds(labels), tf.constant(0, tf.int64), tf.constant(-1, tf.int64)))
    return tf.ensure_shape(truth, [num_classes])  # bincount's length is not static; the Source's contract is.
