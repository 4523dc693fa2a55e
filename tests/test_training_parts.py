"""Pieces of the training loop with independent oracles: step planning, progress/ETA,
the padded distributed eval pass, batch splitting, and the weight-decay term."""

import numpy as np
import pytest
import tensorflow as tf

from simclr_tf.config import ModelConfig, OptimizerConfig, RunConfig, TrainConfig
from simclr_tf.data import Source
from simclr_tf.data.source import shard_every_nth
from simclr_tf.strategy import StrategyError, check_cpu_gradient_batch, per_replica_batch_size
from simclr_tf.training.builders import build_model, l2_penalty
from simclr_tf.evaluation.predict import eval_steps_for, predict
from simclr_tf.training.progress import Progress
from simclr_tf.training.trainer import plan_steps, warmup_warning


def run_config(**train):
    return RunConfig(model_dir="/tmp/unused", optimizer=OptimizerConfig(warmup_epochs=1), train=TrainConfig(**train))


def test_plan_steps_follows_the_reference_formulas():
    schedule = plan_steps(run_config(train_batch_size=256, train_epochs=2, steps_per_loop=25), 60_000)
    assert schedule.total_steps == 60_000 * 2 // 256 + 1 == 469
    assert schedule.warmup_steps == 60_000 // 256 == 234
    assert schedule.checkpoint_steps == round(60_000 / 256) == 234
    assert schedule.steps_per_loop == 25
    assert plan_steps(run_config(train_steps=10, checkpoint_steps=4), 1000).steps_per_loop == 4


def test_a_run_shorter_than_its_warmup_is_planned_with_a_warning_like_the_reference():
    schedule = plan_steps(run_config(train_batch_size=100, train_steps=5), 1000)
    assert (schedule.total_steps, schedule.warmup_steps, schedule.ends_in_warmup) == (5, 10, True)
    assert not plan_steps(run_config(train_batch_size=100, train_steps=11), 1000).ends_in_warmup
    # Peak 0.3 * 100 / 256; the last step (4) runs at 4/10 of it.
    assert warmup_warning(schedule, run_config(train_batch_size=100, train_steps=5)) == (
        "warning: OptimizerConfig.warmup_epochs=1 gives 10 warmup steps, not fewer than the 5 training steps: the "
        "learning rate stays in its linear warmup, rising to 0.04688 (the peak 0.1172 is never reached), and the cosine "
        "decay never starts")


def test_per_replica_batch_size_names_the_flag():
    assert per_replica_batch_size(512, 8, "TrainConfig.train_batch_size") == 64
    with pytest.raises(StrategyError, match="TrainConfig.train_batch_size=100 is not divisible by the 3"):
        per_replica_batch_size(100, 3, "TrainConfig.train_batch_size")


def test_odd_cpu_gradient_batch_is_refused_unless_onednn_is_off(monkeypatch):
    strategy = tf.distribute.get_strategy()  # This machine: CPU only.
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    with pytest.raises(StrategyError, match="TrainConfig.train_batch_size: the per-replica batch of 5 is odd"):
        check_cpu_gradient_batch(5, strategy, "TrainConfig.train_batch_size")
    check_cpu_gradient_batch(6, strategy, "TrainConfig.train_batch_size")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    check_cpu_gradient_batch(5, strategy, "TrainConfig.train_batch_size")


def test_progress_rate_and_eta_skip_the_first_loop():
    times = iter([0.0, 30.0, 40.0])  # start; first report after tracing; 10 s for the next 100 steps
    lines = []
    progress = Progress(total_steps=1000, global_batch_size=64, start_step=0, printer=lines.append,
                        clock=lambda: next(times))
    progress.report(100, {"loss": 1.0})
    record = progress.report(200, {"loss": 0.5})
    assert record["images_per_second"] == pytest.approx(100 / 10 * 64)
    assert record["eta_seconds"] == pytest.approx(800 / 10)
    assert lines[-1].startswith("step 200/1000 (20.0%) | 640 img/s | ETA 0:01:20 | loss 0.5")


@pytest.mark.parametrize("num_examples, batch, replicas", [(37, 8, 4), (64, 16, 4), (5, 4, 1), (10_000, 256, 2)])
def test_eval_steps_cover_the_largest_shard_for_any_pipeline_count(num_examples, batch, replicas):
    steps = eval_steps_for(num_examples, batch, replicas)
    for pipelines in {1, replicas}:
        largest_shard = -(-num_examples // pipelines)
        assert steps * batch // pipelines >= largest_shard
    assert (steps - 1) * batch < num_examples + batch  # At most one step more than needed.


def tiny_source(num_examples):
    images = np.arange(num_examples, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)

    def make_dataset(input_context=None):
        dataset = tf.data.Dataset.from_tensor_slices(
            (tf.range(num_examples, dtype=tf.int64), images, tf.range(num_examples, dtype=tf.int64) % 5))
        return shard_every_nth(dataset, input_context)

    return Source(name="tiny", num_examples=num_examples, num_classes=5, make_dataset=make_dataset)


def test_predict_returns_every_example_once_in_order_without_padding(mirrored_strategy):
    source = tiny_source(37)
    outputs, labels = predict(
        mirrored_strategy, lambda images: {"mean": tf.reduce_mean(images, axis=[1, 2, 3])}, source,
        image_size=4, global_batch_size=8,
    )
    np.testing.assert_array_equal(labels, np.arange(37) % 5)
    np.testing.assert_allclose(outputs["mean"], np.arange(37) / 255.0, atol=1e-6)


def test_weight_decay_term_matches_numpy():
    model = build_model(ModelConfig(resnet_depth=18, width_multiplier=0.125, cifar_stem=True), image_size=8,
                        num_classes=10, train_mode="pretrain", num_replicas=1)
    head_kernel = model.supervised_head.variables[0].numpy()
    assert head_kernel.ndim == 2
    np.testing.assert_allclose(float(l2_penalty(model, 1e-3, "lars")), 1e-3 * np.sum(head_kernel ** 2) / 2, rtol=1e-5)
    expected = sum(np.sum(v.numpy() ** 2) / 2 for v in model.trainable_variables if "batch_normalization" not in v.path)
    np.testing.assert_allclose(float(l2_penalty(model, 1e-3, "momentum")), 1e-3 * expected, rtol=1e-5)
    assert float(l2_penalty(model, 0.0, "momentum")) == 0.0


def tiny_run_config(model_dir, **train):
    from simclr_tf.augment import AugmentConfig

    return RunConfig(
        model_dir=str(model_dir),
        augment=AugmentConfig.for_image_size(16),
        model=ModelConfig(resnet_depth=18, width_multiplier=0.125, cifar_stem=True, num_proj_layers=2),
        optimizer=OptimizerConfig(warmup_epochs=0, learning_rate=1.0),
        train=TrainConfig(train_batch_size=16, temperature=0.5, checkpoint_steps=100, shuffle_buffer=1, **train),
    )


def trainer_with_nan_batch(config, nan_batch: int, printer):
    """A Trainer whose input pipeline yields NaN images in its `nan_batch`-th batch (1-based):
    that step's loss and gradients are NaN, as with corrupt input data."""
    from simclr_tf.training.trainer import Trainer

    class NaNBatchTrainer(Trainer):
        def input_dataset(self, context, start_step):
            batches = super().input_dataset(context, start_step).enumerate(start=start_step + 1)
            return batches.map(lambda number, batch: (
                tf.where(number == nan_batch, float("nan"), batch[0]), batch[1]))

    return NaNBatchTrainer(config, tf.distribute.get_strategy(), printer=printer)


def test_skip_nonfinite_steps_leaves_weights_and_step_untouched_and_counts_the_skip(tmp_path):
    config = tiny_run_config(tmp_path, train_steps=4, steps_per_loop=1, skip_nonfinite_steps=True)
    lines = []
    trainer = trainer_with_nan_batch(config, 3, lines.append)
    snapshots = []  # (step, weights) before each loop call
    original_loop = trainer._make_loop

    def recording_loop():
        run_steps = original_loop()

        def wrapped(iterator, num_steps):
            snapshots.append((trainer.step, [v.numpy().copy() for v in trainer.model.trainable_variables]))
            return run_steps(iterator, num_steps)

        return wrapped

    trainer._make_loop = recording_loop
    summary = trainer.train()
    assert summary["step"] == 4 and summary["skipped_steps"] == 1
    assert lines[1] == trainer.weight_decay_summary and lines[1].startswith("LARS weight decay 1e-06 on ")
    # Step 3 was attempted twice: the NaN attempt changed nothing, the retry trained.
    logged = [line for line in lines if line.startswith("step ")]
    assert [line.split()[1] for line in logged] == ["1/4", "2/4", "2/4", "3/4", "4/4"]
    assert all(np.isfinite(v.numpy()).all() for v in trainer.model.trainable_variables)
    assert [step for step, _ in snapshots] == [0, 1, 2, 2, 3]
    before_nan, after_nan = snapshots[2][1], snapshots[3][1]
    for before, after in zip(before_nan, after_nan):
        np.testing.assert_array_equal(after, before)
    assert any(not np.array_equal(a, b) for a, b in zip(snapshots[1][1], snapshots[2][1]))


def test_without_skipping_a_nonfinite_loss_raises_naming_the_step(tmp_path):
    from simclr_tf.training.trainer import NonFiniteLossError

    config = tiny_run_config(tmp_path, train_steps=4, steps_per_loop=2)
    trainer = trainer_with_nan_batch(config, 3, lambda line: None)
    with pytest.raises(NonFiniteLossError, match="non-finite at step 3; .*no checkpoint was saved yet"):
        trainer.train()
