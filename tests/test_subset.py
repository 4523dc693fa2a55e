"""Tests for simclr_tf/data/subset.py: hand-counted class quotas and a small in-memory Source."""

import json

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf.data.source import Source, shard_every_nth
from simclr_tf.data.subset import (
    read_labels,
    read_subset_ids,
    select_subset,
    subset_source,
    write_subset_ids,
)

# Class sizes 40, 26, 3, 10 plus 7 unlabelled (-1), in a shuffled order.
CLASS_SIZES = {0: 40, 1: 26, 2: 3, 3: 10, -1: 7}
LABELS = np.random.default_rng(123).permutation(
    np.concatenate([np.full(n, c) for c, n in CLASS_SIZES.items()])).astype(np.int64)


def _counts(indices, labels=LABELS):
    return np.bincount(labels[indices], minlength=4).tolist()


def test_per_class_takes_exactly_that_many_from_every_class():
    indices = select_subset(LABELS, per_class=3, seed=0)
    assert indices.dtype == np.int64 and (np.diff(indices) > 0).all()
    assert _counts(indices) == [3, 3, 3, 3]


def test_fraction_keeps_each_class_share_and_at_least_one():
    indices = select_subset(LABELS, fraction=0.1, seed=0)
    # round(4.0) = 4, round(2.6) = 3, round(0.3) = 0 -> 1, round(1.0) = 1.
    assert _counts(indices) == [4, 3, 1, 1]
    assert (LABELS[indices] >= 0).all()


def test_fraction_one_takes_every_labelled_example_and_no_unlabelled_one():
    np.testing.assert_array_equal(select_subset(LABELS, fraction=1.0),
                                  np.flatnonzero(LABELS >= 0))


def test_same_seed_same_subset_other_seed_other_subset():
    np.random.seed(1)
    first = select_subset(LABELS, fraction=0.25, seed=5)
    np.random.seed(2)  # numpy's global state must not matter
    np.testing.assert_array_equal(select_subset(LABELS, fraction=0.25, seed=5), first)
    assert not np.array_equal(select_subset(LABELS, fraction=0.25, seed=6), first)


def test_smaller_subset_is_inside_larger_and_new_class_moves_nothing():
    small = select_subset(LABELS, per_class=2, seed=3)
    large = select_subset(LABELS, per_class=3, seed=3)
    assert np.isin(small, large).all()
    # Appending a class leaves every earlier class's picks where they were.
    extended = select_subset(np.concatenate([LABELS, np.full(5, 4)]), per_class=2, seed=3)
    np.testing.assert_array_equal(extended[extended < len(LABELS)], small)


def test_excluded_examples_are_never_chosen():
    exclude = np.flatnonzero(LABELS == 0)[:20]
    exclude = np.concatenate([exclude, np.flatnonzero(LABELS == 1)[:6]])
    indices = select_subset(LABELS, fraction=0.1, seed=0, exclude=exclude)
    assert not np.isin(indices, exclude).any()
    # Shares of what is left: 20 -> round(2.0) = 2, 20 -> 2, 3 -> 1, 10 -> 1.
    assert _counts(indices) == [2, 2, 1, 1]
    # per_class must fit into what is left: class 0 keeps 20 after the exclusion.
    with pytest.raises(ValueError, match="Class 0 has only 20"):
        select_subset(LABELS, per_class=21, exclude=np.flatnonzero(LABELS == 0)[:20])


def test_class_too_small_is_named_with_its_count():
    with pytest.raises(ValueError, match="Class 2 has only 3 available"):
        select_subset(LABELS, per_class=4)


@pytest.mark.parametrize("kwargs, name", [
    (dict(), "exactly one"),
    (dict(fraction=0.1, per_class=2), "exactly one"),
    (dict(fraction=0.0), "fraction"),
    (dict(fraction=1.5), "fraction"),
    (dict(fraction=True), "fraction"),
    (dict(per_class=0), "per_class"),
    (dict(per_class=2.0), "per_class"),
    (dict(per_class=1, seed=-1), "seed"),
    (dict(per_class=1, exclude=[len(LABELS)]), "exclude"),
])
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        select_subset(LABELS, **kwargs)


def test_bad_labels_are_named():
    with pytest.raises(ValueError, match="labels"):
        select_subset(LABELS.reshape(2, -1), per_class=1)
    with pytest.raises(ValueError, match="labels"):
        select_subset(np.full(5, -1), per_class=1)


# An in-memory Source of 20 examples whose image pixels hold the example index, yielded
# in a scrambled index order; pipeline k of n keeps elements k, k + n, ...
NUM = 20
ORDER = np.random.default_rng(0).permutation(NUM)
SOURCE_LABELS = np.arange(NUM) % 3


def _make_dataset(input_context):
    images = np.broadcast_to(ORDER[:, None, None, None], (NUM, 2, 2, 3)).astype(np.uint8)
    ds = tf.data.Dataset.from_tensor_slices(
        (ORDER.astype(np.int64), images, SOURCE_LABELS[ORDER].astype(np.int64)))
    return shard_every_nth(ds, input_context)


SOURCE = Source(name="toy", num_examples=NUM, num_classes=3, make_dataset=_make_dataset,
                class_names=("a", "b", "c"))


def _elements(source, input_context=None):
    return [(int(i), int(image[0, 0, 0]), int(label))
            for i, image, label in source.make_dataset(input_context).as_numpy_iterator()]


def test_read_labels_orders_by_index():
    np.testing.assert_array_equal(read_labels(SOURCE), SOURCE_LABELS)
    with pytest.raises(ValueError, match="no labels"):
        read_labels(Source("unlabelled", NUM, None, _make_dataset))
    with pytest.raises(ValueError, match="fewer than num_examples"):
        read_labels(Source("short", NUM + 1, 3, _make_dataset))


def test_subset_source_yields_chosen_examples_renumbered():
    indices = np.array([15, 3, 8, 11])  # unsorted on purpose: new index = position here
    subset = subset_source(SOURCE, indices)
    assert subset.num_examples == 4 and subset.name == "toy[subset of 4]"
    assert subset.num_classes == 3 and subset.class_names == ("a", "b", "c")
    expected = {(0, 15, 0), (1, 3, 0), (2, 8, 2), (3, 11, 2)}  # (new index, original, 11 % 3)
    elements = _elements(subset)
    assert len(elements) == 4 and set(elements) == expected


def test_subset_source_shards_are_disjoint_and_cover_the_subset():
    indices = select_subset(SOURCE_LABELS, per_class=3, seed=1)
    subset = subset_source(SOURCE, indices)
    shards = [_elements(subset, tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=k)) for k in (0, 1)]
    assert shards[0] and shards[1]
    assert not set(shards[0]) & set(shards[1])
    union = sorted(shards[0] + shards[1])
    assert union == [(i, int(original), int(SOURCE_LABELS[original]))
                     for i, original in enumerate(indices)]


@pytest.mark.parametrize("indices", [[], [1, 1], [NUM], [-1], [[1, 2]], [0.5]])
def test_subset_source_rejects_bad_indices(indices):
    with pytest.raises(ValueError, match="indices"):
        subset_source(SOURCE, np.array(indices))


def test_subset_ids_file_round_trips(tmp_path):
    indices = select_subset(LABELS, fraction=0.1, seed=4)
    path = str(tmp_path / "sub" / "ids.json")
    assert write_subset_ids(path, indices, source_name="toy", split="train", seed=4,
                            fraction=0.1, per_class=None, labels=LABELS) == path
    np.testing.assert_array_equal(read_subset_ids(path), indices)
    with open(path) as f:
        record = json.load(f)
    assert record["counts_per_class"] == np.bincount(LABELS[indices], minlength=4).tolist()
    assert record["counts_per_class"] == [4, 3, 1, 1]
    assert (record["source_name"], record["split"], record["seed"]) == ("toy", "train", 4)
    assert (record["fraction"], record["per_class"]) == (0.1, None)


def test_read_subset_ids_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"top1": 0.5}))
    with pytest.raises(ValueError, match="path"):
        read_subset_ids(str(path))
