"""Class-balanced, seeded labelled subsets of a Source, for semi-supervised fine-tuning.

SimCLR §6 fine-tunes on 1% / 10% of ImageNet's labels (fixed id lists, about 13
and 128 images per class). For other datasets we draw such a subset ourselves:
`select_subset` picks example indices, `subset_source` turns them into a Source,
and `write_subset_ids` records them so runs on "the same 1%" really are.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import tensorflow as tf

from simclr_tf.arg_checks import fail, is_int
from simclr_tf.data.source import Source, pipeline_shard, shard_every_nth
from simclr_tf.io_utils import write_json_atomically


def _int_array(name: str, values: Any, *, num_examples: int | None = None) -> np.ndarray:
    """`values` as 1-D int64, optionally checked to lie in [0, num_examples)."""
    values = np.asarray(values)
    if values.ndim != 1:
        fail(name, values.shape, "must be 1-D")
    if values.size and not np.issubdtype(values.dtype, np.integer):
        fail(name, values.dtype, "must be integers")
    values = values.astype(np.int64)
    if num_examples is not None and values.size and (
            values.min() < 0 or values.max() >= num_examples):
        fail(name, (int(values.min()), int(values.max())),
              f"(min, max) must lie in [0, {num_examples})")
    return values


def select_subset(
    labels: np.ndarray,
    *,
    fraction: float | None = None,
    per_class: int | None = None,
    seed: int = 0,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted int64 positions in `labels` of a class-balanced random subset.

    Give exactly one of `per_class` (that many from every class; ValueError naming
    the class if it has fewer) or `fraction` (each class c with n_c available
    examples gives max(1, round(fraction * n_c)), Python's round-half-to-even:
    every class keeps its share of the data, as ImageNet's 1% list does, and no
    class vanishes; a class with nothing available is a ValueError). Classes are
    the distinct labels >= 0; labels < 0 (unlabelled) and positions in `exclude`
    (e.g. held out for evaluation) are never chosen.

    Each class draws from its own stream, default_rng([seed, class]), as a prefix
    of a permutation of its available examples: the result ignores numpy's
    global state, a class's picks do not move when other classes change, and a
    smaller count picks a subset of a larger one (1% inside 10% for one seed).
    """
    labels = _int_array("labels", labels)
    if (fraction is None) == (per_class is None):
        raise ValueError(
            f"Give exactly one of `fraction` and `per_class`, got fraction={fraction!r}, "
            f"per_class={per_class!r}.")
    if fraction is not None and (
            isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number))
            or not 0 < fraction <= 1):
        fail("fraction", fraction, "must be a number in (0, 1]")
    if per_class is not None and (not is_int(per_class) or per_class < 1):
        fail("per_class", per_class, "must be an int >= 1")
    if not is_int(seed) or seed < 0:
        fail("seed", seed, "must be an int >= 0")  # SeedSequence entropy is non-negative
    available = labels >= 0
    if exclude is not None:
        available[_int_array("exclude", exclude, num_examples=len(labels))] = False
    classes = np.unique(labels[labels >= 0])
    if classes.size == 0:
        fail("labels", "no label >= 0", "must contain labelled examples")

    chosen = []
    for label in classes:
        candidates = np.flatnonzero(available & (labels == label))
        if per_class is not None:
            count = per_class
        else:
            count = max(1, round(float(fraction) * len(candidates)))
        if count > len(candidates):
            requested = (f"per_class={per_class}" if per_class is not None
                         else f"fraction={fraction}")
            raise ValueError(
                f"Class {int(label)} has only {len(candidates)} available examples (labelled, "
                f"not excluded), fewer than the {count} asked for by {requested}.")
        rng = np.random.default_rng([seed, int(label)])
        chosen.append(candidates[rng.permutation(len(candidates))[:count]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def read_labels(source: Source) -> np.ndarray:
    """int64 [num_examples]: the label of every example by its index (-1 if unlabelled).

    Reads the whole source once, unsharded; the image is mapped away right
    away so tf.data can skip work that only feeds it (decoding still happens
    where the source decodes before yielding).
    """
    if source.num_classes is None:
        fail("source", source.name, "has no labels (num_classes is None)")
    labels = np.full(source.num_examples, -1, np.int64)
    seen = np.zeros(source.num_examples, bool)
    ds = source.make_dataset(None).map(lambda index, image, label: (index, label))
    for index, label in ds.batch(4096).as_numpy_iterator():
        if (index.min() < 0 or index.max() >= source.num_examples or seen[index].any()
                or np.unique(index).size != index.size):
            fail("source", source.name,
                  f"must yield each index in [0, {source.num_examples}) once; it repeated or "
                  f"exceeded one in [{index.min()}, {index.max()}]")
        seen[index] = True
        labels[index] = label
    if not seen.all():
        fail("source", source.name,
              f"yielded {int(seen.sum())} examples, fewer than num_examples={source.num_examples}")
    return labels


def subset_source(source: Source, indices: np.ndarray) -> Source:
    """A Source yielding only the examples at `indices`, re-indexed 0..len(indices)-1.

    The example at indices[i] gets index i, so the Source contract (index unique
    in [0, num_examples)) holds and per-example augmentation seeds stay dense.
    Every pipeline reads the whole base source, keeps the subset, and then takes
    every n-th of it: the shards are disjoint, cover the subset, differ in size by at
    most one, and their sizes are known (training pipelines need the cardinality).
    The kept examples are cached in memory (decoded) on the first pass, so later
    epochs do not scan the base source again: right for the small labelled
    fractions this is for; for ImageNet use tfds's imagenet2012_subset/1pct, /10pct.
    """
    indices = _int_array("indices", indices, num_examples=source.num_examples)
    if indices.size == 0:
        fail("indices", indices, "must not be empty")
    if np.unique(indices).size != indices.size:
        fail("indices", "repeated values", "must be unique")
    # Dense lookup original index -> new index (-1: not in the subset): one gather
    # per element, where a hash table would need initialising on every worker.
    lookup = np.full(source.num_examples, -1, np.int64)
    lookup[indices] = np.arange(indices.size)
    base_make_dataset = source.make_dataset

    def make_dataset(input_context: tf.distribute.InputContext | None) -> tf.data.Dataset:
        table = tf.constant(lookup)
        ds = base_make_dataset(None)
        ds = ds.map(lambda index, image, label: (tf.gather(table, index), image, label))
        ds = ds.filter(lambda index, image, label: index >= 0)
        num_pipelines, pipeline_id = pipeline_shard(input_context)
        shard_size = (indices.size - pipeline_id + num_pipelines - 1) // num_pipelines
        ds = shard_every_nth(ds, input_context).cache()
        return ds.apply(tf.data.experimental.assert_cardinality(shard_size))

    return dataclasses.replace(
        source,
        name=f"{source.name}[subset of {indices.size}]",
        num_examples=int(indices.size),
        make_dataset=make_dataset,
    )


def keep_labels_of(source: Source, indices: np.ndarray, unlabelled: int = -1) -> Source:
    """Every example of `source`, but only those at `indices` keep their label; the others get
    `unlabelled`. SimCLRv2's distillation (arXiv 2006.10029, eq. 3) trains on every image and adds
    the cross-entropy of the labelled ones only."""
    indices = _int_array("indices", indices, num_examples=source.num_examples)
    if indices.size == 0:
        fail("indices", indices, "must not be empty")
    labelled = np.zeros(source.num_examples, bool)
    labelled[indices] = True
    base_make_dataset = source.make_dataset

    def make_dataset(input_context: tf.distribute.InputContext | None) -> tf.data.Dataset:
        table = tf.constant(labelled)
        return base_make_dataset(input_context).map(
            lambda index, image, label: (index, image, tf.where(tf.gather(table, index), label,
                                                                tf.constant(unlabelled, label.dtype))))

    return dataclasses.replace(source, name=f"{source.name}[labels of {indices.size}]", make_dataset=make_dataset)


def write_subset_ids(
    path: str,
    indices: np.ndarray,
    *,
    source_name: str,
    split: str,
    seed: int,
    fraction: float | None,
    per_class: int | None,
    labels: np.ndarray,
) -> str:
    """Writes the chosen original example ids, per-class counts and the arguments as JSON.

    `labels` are all labels by example index (`read_labels`); `counts_per_class[c]`
    is how many ids have label c, for c in 0..max label. Written atomically so
    a reader never sees half a file. Returns `path`.
    """
    labels = _int_array("labels", labels)
    indices = _int_array("indices", indices, num_examples=len(labels))
    num_labels = int(labels.max(initial=0)) + 1
    chosen_labels = labels[indices]
    if (chosen_labels < 0).any():
        fail("indices", "ids of unlabelled examples", "must only hold labelled examples")
    return write_json_atomically(path, {
        "source_name": source_name,
        "split": split,
        "seed": int(seed),
        "fraction": None if fraction is None else float(fraction),
        "per_class": None if per_class is None else int(per_class),
        "num_ids": int(indices.size),
        "counts_per_class": np.bincount(chosen_labels, minlength=num_labels).tolist(),
        "ids": indices.tolist(),
    })


def read_subset_ids(path: str) -> np.ndarray:
    """The original example ids (int64, as written) from a `write_subset_ids` file."""
    with tf.io.gfile.GFile(path) as f:
        record = json.load(f)
    if not isinstance(record, dict) or "ids" not in record:
        fail("path", path, "must be a write_subset_ids JSON file (with an \"ids\" list)")
    ids = _int_array("ids", record["ids"])
    if "num_ids" in record and record["num_ids"] != ids.size:
        fail("path", path, f"lists {ids.size} ids but says num_ids={record['num_ids']}")
    return ids
