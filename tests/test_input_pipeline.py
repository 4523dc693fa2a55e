import numpy as np
import pytest
import tensorflow as tf

from simclr_tf.augment import AugmentConfig
from simclr_tf.data import Source
from simclr_tf.data.source import shard_every_nth
from simclr_tf.input_pipeline import eval_dataset, pretrain_dataset

NUM_EXAMPLES = 12
IMAGES = np.random.default_rng(0).integers(0, 256, (NUM_EXAMPLES, 20, 20, 3), dtype=np.uint8)


def tiny_source() -> Source:
    def make_dataset(input_context=None):
        dataset = tf.data.Dataset.from_tensor_slices(
            (tf.range(NUM_EXAMPLES, dtype=tf.int64), IMAGES, tf.range(NUM_EXAMPLES, dtype=tf.int64) % 3))
        return shard_every_nth(dataset, input_context)

    return Source(name="tiny", num_examples=NUM_EXAMPLES, num_classes=3, make_dataset=make_dataset)


def first_batches(dataset, count):
    return [tuple(np.asarray(t) for t in batch) for batch in dataset.take(count)]


def test_pretrain_batches_have_views_and_labels():
    views, labels = first_batches(pretrain_dataset(tiny_source(), AugmentConfig.for_image_size(16), 4), 1)[0]
    assert views.shape == (4, 2, 16, 16, 3) and views.dtype == np.float32
    assert labels.shape == (4,) and labels.dtype == np.int64


def test_pretrain_stream_is_reproducible_and_reshuffles_each_epoch():
    config = AugmentConfig.for_image_size(16)
    run_1 = first_batches(pretrain_dataset(tiny_source(), config, 4, seed=3), 6)
    run_2 = first_batches(pretrain_dataset(tiny_source(), config, 4, seed=3), 6)
    for (v1, l1), (v2, l2) in zip(run_1, run_2):
        np.testing.assert_array_equal(v1, v2)
        np.testing.assert_array_equal(l1, l2)
    epoch_0 = np.concatenate([b[1] for b in run_1[:3]])
    epoch_1 = np.concatenate([b[1] for b in run_1[3:]])
    # Every example exactly once per epoch (labels are index % 3: 4 of each).
    assert np.bincount(epoch_0).tolist() == [4, 4, 4] and np.bincount(epoch_1).tolist() == [4, 4, 4]
    other_seed = first_batches(pretrain_dataset(tiny_source(), config, 4, seed=4), 1)[0][0]
    assert np.abs(other_seed - run_1[0][0]).mean() > 0.01


def test_views_of_an_example_do_not_depend_on_sharding():
    # Without shuffling, pipeline k of 2 reads examples k, k+2, ...: its views of example 2
    # must equal the single pipeline's views of example 2.
    config = AugmentConfig.for_image_size(16)
    single = first_batches(pretrain_dataset(tiny_source(), config, 1, shuffle_buffer=1), 3)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0)
    shard_0 = first_batches(pretrain_dataset(tiny_source(), config, 1, shuffle_buffer=1, input_context=context), 2)
    np.testing.assert_allclose(shard_0[1][0], single[2][0], atol=1e-6)


def test_eval_dataset_is_one_ordered_pass():
    batches = first_batches(eval_dataset(tiny_source(), 16, 5), 10)
    assert [b[0].shape[0] for b in batches] == [5, 5, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), np.arange(NUM_EXAMPLES) % 3)


def test_bad_batch_size_raises():
    with pytest.raises(ValueError, match="batch_size"):
        pretrain_dataset(tiny_source(), AugmentConfig.for_image_size(16), 0)


def test_stream_started_at_an_example_continues_the_uninterrupted_stream():
    config = AugmentConfig.for_image_size(8)
    uninterrupted = first_batches(pretrain_dataset(tiny_source(), config, 2, seed=3), 9)
    # 12 examples per epoch: example 10 is inside epoch 0, example 16 inside epoch 1.
    for start_batch in (5, 8):
        resumed = first_batches(pretrain_dataset(tiny_source(), config, 2, seed=3, start_example=2 * start_batch), 9 - start_batch)
        for (views, labels), (expected_views, expected_labels) in zip(resumed, uninterrupted[start_batch:]):
            np.testing.assert_array_equal(labels, expected_labels)
            np.testing.assert_array_equal(views, expected_views)


@pytest.mark.parametrize("global_seed", [0, 7])
def test_stream_ignores_tensorflow_global_seed(global_seed):
    config = AugmentConfig.for_image_size(8)
    expected = first_batches(pretrain_dataset(tiny_source(), config, 4, seed=1), 4)
    tf.random.set_seed(global_seed)
    try:
        seeded = first_batches(pretrain_dataset(tiny_source(), config, 4, seed=1), 4)
    finally:
        tf.random.set_seed(None)
    for (views, labels), (expected_views, expected_labels) in zip(seeded, expected):
        np.testing.assert_array_equal(labels, expected_labels)
        np.testing.assert_array_equal(views, expected_views)
