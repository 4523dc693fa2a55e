"""Benchmark: two-view SimCLR augmentation throughput of the tf.data pipeline.

    .venv/bin/python benchmarks/input_pipeline.py [--sizes=32,224] [--seconds=20] [--keras_cv]

Prints two-view augmented images/s (one image = both of its views) for the default
settings at each size, and writes the figures as JSON (--json). 32 px reads the
offline Fashion-MNIST; 224 px uses in-memory random 256x320 JPEG-size images, so
only augmentation is timed, not decoding. With --keras_cv it also times a
batched keras-cv pipeline of the nearest layers it has, the alternative we measured
before choosing our own stateless per-example ops (see the README).
"""

import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from simclr_tf.augment import AugmentConfig
from simclr_tf.data import Source, SourceConfig, build_source
from simclr_tf.input_pipeline import pretrain_dataset

flags.DEFINE_list("sizes", ["32", "224"], "Output image sizes to benchmark.")
flags.DEFINE_float("seconds", 20.0, "Measured time per configuration, after warm-up.")
flags.DEFINE_integer("batch_size", 256, "Images per batch.")
flags.DEFINE_bool("keras_cv", False, "Also time keras-cv's batched layers.")
flags.DEFINE_string("json", "", "Also write the results to this JSON file.")
FLAGS = flags.FLAGS


def _source_for(size: int):
    if size <= 32:
        return build_source(SourceConfig(dataset="fashion_mnist_offline", split="train"))
    images = np.random.default_rng(0).integers(0, 256, (512, 256, 320, 3), dtype=np.uint8)

    def make_dataset(input_context=None):
        del input_context
        return tf.data.Dataset.from_tensor_slices(
            (tf.range(len(images), dtype=tf.int64), images, -tf.ones(len(images), tf.int64)))

    return Source(name="random_256x320", num_examples=len(images), num_classes=None, make_dataset=make_dataset)


def _time_batches(dataset, batch_size: int, seconds: float) -> float:
    iterator = iter(dataset)
    for _ in range(3):
        next(iterator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterator)
        count += batch_size
    return count / (time.perf_counter() - start)


def ours(size: int) -> float:
    dataset = pretrain_dataset(_source_for(size), AugmentConfig.for_image_size(size), FLAGS.batch_size,
                               shuffle_buffer=1024)
    return _time_batches(dataset, FLAGS.batch_size, FLAGS.seconds)


def keras_cv_batched(size: int) -> float:
    # Imported here, only when --keras_cv asks for it: keras-cv is used nowhere else in the project (simclr_tf
    # has its own ops) and this comparison is optional, so a plain run works without it.
    try:
        import keras_cv
    except ImportError:
        raise SystemExit('error: --keras_cv needs keras-cv, an optional extra: pip install -e ".[benchmarks]"') from None

    strength = 0.5 if size <= 32 else 1.0
    layers = [
        keras_cv.layers.RandomCropAndResize((size, size), (0.08, 1.0), (3 / 4, 4 / 3)),
        keras_cv.layers.RandomFlip("horizontal"),
        keras_cv.layers.RandomApply(keras_cv.layers.RandomColorJitter(
            (0, 1), 0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength), rate=0.8),
        keras_cv.layers.RandomApply(keras_cv.layers.Grayscale(output_channels=3), rate=0.2),
    ]

    def augment(images):
        views = []
        for _ in range(2):
            x = images
            for layer in layers:
                x = layer(x, training=True)
            views.append(x)
        return tf.stack(views, axis=1)

    source = _source_for(size)
    dataset = source.make_dataset(None).map(lambda i, image, label: tf.image.resize(image, [size + 32, size + 32]) / 255.0)
    dataset = dataset.repeat().batch(FLAGS.batch_size).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return _time_batches(dataset.prefetch(tf.data.AUTOTUNE), FLAGS.batch_size, FLAGS.seconds)


def main(argv):
    del argv
    results = {"cpu_count": os.cpu_count(), "batch_size": FLAGS.batch_size, "rows": []}
    candidates = [("simclr_tf per-example stateless (tf.data map)", ours)]
    if FLAGS.keras_cv:
        candidates.append(("keras-cv batched layers", keras_cv_batched))
    for size in (int(s) for s in FLAGS.sizes):
        for name, fn in candidates:
            rate = fn(size)
            results["rows"].append({"pipeline": name, "image_size": size, "two_view_images_per_s": round(rate, 1)})
            print(f"{name:48s} {size:4d} px  {rate:9.1f} two-view images/s", flush=True)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
