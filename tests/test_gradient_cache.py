"""Gradient caching (simclr_tf.training.gradient_cache) against plain steps computed by autodiff.

The oracle for k chunks is a plain step - one tape over the whole batch, NT-Xent's gradient
by autodiff - whose model is called once per ghost batch, so batch norm sees the same
statistics the cached step gives it. Gradients are read from an optimizer that records
what it is given (summed over replicas, as a real optimizer receives them).
"""

import os

import numpy as np
import pytest
import tensorflow as tf
import keras

from cli_helpers import TINY_FLAGS, check_ok, run_cli, train_log
from simclr_tf import distributed
from simclr_tf.config import ModelConfig
from simclr_tf.losses import nt_xent_loss
from simclr_tf.training.builders import build_model, freeze_for_finetuning
from simclr_tf.training.gradient_cache import make_cached_train_step, moving_statistics
from simclr_tf.training.step import StepConfig, make_train_step, views_to_batch, weight_decay_term

MODEL = ModelConfig(resnet_depth=18, width_multiplier=0.125, num_proj_layers=2, cifar_stem=True)
IMAGE_SIZE = 16
NUM_CLASSES = 10
PRETRAIN = StepConfig(train_mode="pretrain", temperature=0.5, hidden_norm=True, weight_decay=1e-3,
                      optimizer_name="momentum", supervised=True)


class RecordingOptimizer(keras.optimizers.SGD):
    """Keeps the (replica-summed) gradients it is given instead of applying them."""

    def build(self, variables):
        super().build(variables)
        self.recorded = [self.add_variable_from_reference(v, "recorded") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        self.recorded[self._get_variable_index(variable)].assign(gradient)


def make_model(num_replicas=1, seed=0, train_mode="pretrain"):
    keras.utils.set_random_seed(seed)
    model = build_model(MODEL, image_size=IMAGE_SIZE, num_classes=NUM_CLASSES, train_mode=train_mode,
                        num_replicas=num_replicas)
    # Non-trivial moving statistics, so that restoring and updating them are both visible.
    rng = np.random.default_rng(seed)
    for variable in moving_statistics(model):
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
    optimizer = RecordingOptimizer(learning_rate=1.0)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def batch(size, seed=1, num_views=2):
    rng = np.random.default_rng(seed)
    views = rng.uniform(0, 1, (size, num_views, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size).astype("int32")
    return tf.constant(views), tf.constant(labels)


def ghost_batch_step(model, optimizer, config, ghost_batches):
    """A plain step by autodiff whose BN normalises each of `ghost_batches` (lists of example
    indices into the batch) separately; the loss sees every example in batch order."""

    def step(views, labels):
        num_views = views.shape[1]
        order = np.concatenate(ghost_batches)
        with tf.GradientTape() as tape:
            outputs = [model(views_to_batch(tf.gather(views, ids)), training=True) for ids in ghost_batches]
            # Per view, examples back in batch order.
            inverse = np.argsort(order)
            projections = [tf.gather(tf.concat([tf.split(o["proj_head_output"], num_views)[v] for o in outputs], 0),
                                     inverse) for v in range(num_views)]
            logits = [tf.gather(tf.concat([tf.split(o["logits_sup"], num_views)[v] for o in outputs], 0), inverse)
                      for v in range(num_views)]
            loss = tf.constant(0.0)
            if config.train_mode == "pretrain":
                loss += nt_xent_loss(projections[0], projections[1], config.temperature).loss
            cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.tile(labels, [num_views]), logits=tf.cast(tf.concat(logits, 0), tf.float32))
            loss += tf.reduce_mean(cross_entropy) + weight_decay_term(model, config)
            scaled = distributed.scale_loss_for_replicas(loss)
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return tf.function(step)


def state(model, optimizer):
    return ([np.array(g) for g in optimizer.recorded], [np.array(v) for v in moving_statistics(model)])


def assert_close_per_variable(actual, expected, rtol, names):
    assert len(actual) == len(expected) > 0
    for a, e, name in zip(actual, expected, names):
        scale = max(np.abs(e).max(), 1e-12)
        assert np.abs(a - e).max() <= rtol * scale, f"{name}: {np.abs(a - e).max() / scale:.2e} relative"


def run_cached(views, labels, num_chunks, config=PRETRAIN, **model_args):
    model, optimizer = make_model(**model_args)
    step = tf.function(make_cached_train_step(model, optimizer, config, num_chunks))
    metrics = step(views, labels)
    return model, optimizer, metrics


def names(model):
    return [v.path for v in model.trainable_variables]


def test_one_chunk_gives_the_plain_step_gradients_and_statistics():
    views, labels = batch(8)
    model, optimizer, metrics = run_cached(views, labels, num_chunks=1)
    plain_model, plain_optimizer = make_model()
    plain_metrics = tf.function(make_train_step(plain_model, plain_optimizer, PRETRAIN))(views, labels)
    (gradients, statistics), (expected, expected_statistics) = state(model, optimizer), state(plain_model, plain_optimizer)
    assert_close_per_variable(gradients, expected, 1e-6, names(model))
    assert_close_per_variable(statistics, expected_statistics, 1e-6, ["moving"] * len(statistics))
    for name in ("total_loss", "contrast_loss", "contrast_acc", "supervised_loss", "supervised_acc", "weight_decay"):
        assert float(metrics[name]) == pytest.approx(float(plain_metrics[name]), rel=1e-6), name


@pytest.mark.parametrize("num_chunks", [2, 4])
def test_chunks_give_the_gradients_and_statistics_of_a_ghost_batch_norm_step(num_chunks):
    views, labels = batch(8)
    model, optimizer, metrics = run_cached(views, labels, num_chunks)
    oracle_model, oracle_optimizer = make_model()
    ghosts = np.split(np.arange(8), num_chunks)
    loss = ghost_batch_step(oracle_model, oracle_optimizer, PRETRAIN, ghosts)(views, labels)
    (gradients, statistics), (expected, expected_statistics) = state(model, optimizer), state(oracle_model,
                                                                                              oracle_optimizer)
    assert_close_per_variable(gradients, expected, 1e-5, names(model))
    # Moving averages moved once per chunk (momentum applied num_chunks times), not twice as often.
    assert_close_per_variable(statistics, expected_statistics, 1e-6, ["moving"] * len(statistics))
    assert float(metrics["total_loss"]) == pytest.approx(float(loss), rel=1e-6)
    # Not the full-batch step: ghost batches change the gradients (the test can tell them apart).
    plain_model, plain_optimizer = make_model()
    tf.function(make_train_step(plain_model, plain_optimizer, PRETRAIN))(views, labels)
    full_batch, _ = state(plain_model, plain_optimizer)
    assert max(np.abs(g - f).max() / max(np.abs(f).max(), 1e-12) for g, f in zip(gradients, full_batch)) > 1e-3


def full_batch_and_chunked_with_frozen_batch_norm(config, teacher_logits=None):
    """[(gradients, metrics) of the plain step, of the step in 4 chunks], only the heads training
    (fine-tuning after block 4, ft_proj_selector=0): BN in inference mode wherever a gradient flows."""
    views, labels = batch(8, num_views=1)
    results = []
    for num_chunks in (None, 4):
        model, _ = make_model(train_mode=config.train_mode)
        freeze_for_finetuning(model, fine_tune_after_block=4, ft_proj_selector=0)
        optimizer = RecordingOptimizer(learning_rate=1.0)
        optimizer.build(model.trainable_variables)
        step = make_train_step(model, optimizer, config, teacher_logits) if num_chunks is None else \
            make_cached_train_step(model, optimizer, config, num_chunks, teacher_logits)
        metrics = tf.function(step)(views, labels)
        results.append((state(model, optimizer)[0], {k: float(v) for k, v in metrics.items()}))
    return results


def test_with_frozen_batch_norm_chunks_give_the_full_batch_gradients_exactly():
    config = StepConfig(train_mode="finetune", temperature=0.5, hidden_norm=True, weight_decay=1e-4,
                        optimizer_name="momentum", supervised=True)
    (expected, _), (gradients, _) = full_batch_and_chunked_with_frozen_batch_norm(config)
    assert len(expected) == 2  # The supervised head's kernel and bias.
    assert_close_per_variable(gradients, expected, 1e-6, ["kernel", "bias"])


def test_distillation_in_chunks_gives_the_full_batch_gradients_with_frozen_batch_norm():
    """Distillation's losses are means over examples: with BN frozen, chunks change nothing."""
    projection = tf.constant(np.random.default_rng(5).normal(0, 1, (3, NUM_CLASSES)).astype("float32"))

    def teacher_logits(images):  # A fixed function of the images, as a frozen teacher is.
        return tf.matmul(tf.reduce_mean(images, axis=(1, 2)), projection) * 5.0

    config = StepConfig(train_mode="distill", temperature=0.5, hidden_norm=True, weight_decay=1e-3,
                        optimizer_name="momentum", supervised=True, distill_temperature=2.0, distill_label_weight=0.3)
    results = full_batch_and_chunked_with_frozen_batch_norm(config, teacher_logits)
    (expected, expected_metrics), (gradients, metrics) = results
    assert_close_per_variable(gradients, expected, 1e-6, ["kernel", "bias"])
    assert metrics.keys() == expected_metrics.keys() >= {"distill_loss", "teacher_agreement", "supervised_loss"}
    for name, value in expected_metrics.items():
        assert metrics[name] == pytest.approx(value, rel=1e-6), name


def run_on_replicas(strategy, make_step, global_batch):
    views, labels = batch(global_batch)
    with strategy.scope():
        model, optimizer = make_model(num_replicas=strategy.num_replicas_in_sync)
    replica_step = make_step(model, optimizer)
    dataset = tf.data.Dataset.from_tensors((views, labels)).unbatch().batch(global_batch)
    inputs = next(iter(strategy.experimental_distribute_dataset(dataset)))
    tf.function(lambda inputs: strategy.run(replica_step, inputs))(inputs)
    return model, state(model, optimizer)


def test_four_mirrored_replicas_give_the_ghost_batch_gradients_and_those_of_one_device(strategy):
    """Global BN: chunk i of every replica is one ghost batch."""
    global_batch, num_chunks = 16, 2
    per_replica = global_batch // strategy.num_replicas_in_sync
    model, (gradients, statistics) = run_on_replicas(
        strategy, lambda model, optimizer: make_cached_train_step(model, optimizer, PRETRAIN, num_chunks), global_batch)

    # The oracle on the same replicas: each calls the model on its chunk i at the same time.
    local_ghosts = np.split(np.arange(per_replica), num_chunks)
    _, (expected, expected_statistics) = run_on_replicas(
        strategy, lambda model, optimizer: ghost_batch_step(model, optimizer, PRETRAIN, local_ghosts).python_function,
        global_batch)
    assert_close_per_variable(gradients, expected, 1e-5, names(model))
    assert_close_per_variable(statistics, expected_statistics, 1e-6, ["moving"] * len(statistics))

    # The oracle on one device, its ghost batches the union of the replicas' chunks. BN computes its
    # statistics as Keras's synchronised BN does (E[x^2] - E[x]^2) there too. Summing over 4 replicas
    # rounds differently: a PLAIN step on 4 replicas differs from one device by up to 1.6e-5 relative
    # (measured on this model), so the bound here is float32 rounding's, not the gradient cache's.
    chunk = per_replica // num_chunks
    ghosts = [np.concatenate([np.arange(r * per_replica + i * chunk, r * per_replica + (i + 1) * chunk)
                              for r in range(strategy.num_replicas_in_sync)]) for i in range(num_chunks)]
    views, labels = batch(global_batch)
    one_device_model, one_device_optimizer = make_model(num_replicas=strategy.num_replicas_in_sync)
    ghost_batch_step(one_device_model, one_device_optimizer, PRETRAIN, ghosts)(views, labels)
    one_device, one_device_statistics = state(one_device_model, one_device_optimizer)
    assert_close_per_variable(gradients, one_device, 5e-5, names(model))
    assert_close_per_variable(statistics, one_device_statistics, 1e-5, ["moving"] * len(statistics))


def test_the_number_of_chunks_must_be_positive():
    model, optimizer = make_model()
    with pytest.raises(ValueError, match="num_chunks must be >= 1, got 0"):
        make_cached_train_step(model, optimizer, PRETRAIN, 0)



def test_the_cli_trains_resumes_and_exports_with_the_gradient_cache_in_bfloat16(tmp_path):
    # Both runs stay inside a warmup of 7 steps, so the learning rate of a step does not depend
    # on --train_steps and the resumed run must continue exactly where the other one is.
    flags = [*TINY_FLAGS, "--gradient_cache_chunk_size=4", "--precision=mixed_bfloat16", "--skip_nonfinite_steps",
             "--deterministic", "--checkpoint_steps=2", "--warmup_epochs=0.002"]
    resumed, straight = str(tmp_path / "resumed"), str(tmp_path / "straight")
    first = check_ok(run_cli(*flags, "--train_steps=2", f"--model_dir={resumed}"))
    assert "gradient cache: 4 chunk(s) of 4 images per replica" in first.stdout
    check_ok(run_cli(*flags, "--train_steps=4", f"--model_dir={resumed}"))
    check_ok(run_cli(*flags, "--train_steps=4", f"--model_dir={straight}"))
    log, expected = train_log(resumed), train_log(straight)
    assert [r["step"] for r in log] == [r["step"] for r in expected] == [1, 2, 3, 4]
    for name in ("total_loss", "contrast_loss", "supervised_loss", "learning_rate"):
        np.testing.assert_allclose([r[name] for r in log], [r[name] for r in expected], rtol=1e-6, err_msg=name)
    assert all(np.isfinite(r["total_loss"]) for r in log) and log[-1]["skipped_steps"] == 0
    assert len({r["total_loss"] for r in log}) == 4  # It trains.
    assert sorted(os.listdir(os.path.join(resumed, "saved_model"))) == ["4"]
