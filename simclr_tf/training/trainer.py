"""The custom training loop: several steps per tf.function call, checkpoints, summaries, progress.

Data flow: source -> two augmented views per image (per replica) -> strategy.run(step)
-> NT-Xent over the global batch + online linear head on stop_gradient(h) -> LARS
-> checkpoint every `checkpoint_steps`. Summaries and the progress line follow each
loop of `steps_per_loop` steps.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from typing import Callable, Protocol

import keras
import tensorflow as tf
from absl import logging

from simclr_tf.augment import AugmentConfig
from simclr_tf.config import PRECISIONS, RunConfig, TrainConfig
from simclr_tf.data import Source, build_source, subset
from simclr_tf.errors import ConfigError, UserError
from simclr_tf.input_pipeline import pretrain_dataset
from simclr_tf.optim import scaled_learning_rate, steps_from_epochs
from simclr_tf.run_dir import SUBSET_IDS_FILE, TRAIN_LOG_FILE
from simclr_tf.strategy import check_cpu_gradient_batch, per_replica_batch_size
from simclr_tf.training import checkpoints
from simclr_tf.training.builders import (
    build_model,
    build_optimizer,
    describe_weight_decay,
    freeze_for_finetuning,
    lars_exclusions,
)
from simclr_tf.training.gradient_cache import make_cached_train_step
from simclr_tf.training.preemption import CoordinatedStop, StopRequest, spans_processes
from simclr_tf.training.progress import Progress
from simclr_tf.training.step import UNLABELLED, StepConfig, make_train_step, metric_names
from simclr_tf.training.teacher import Teacher
from simclr_tf.training.workers import is_chief, worker_dir

# With TrainConfig.skip_nonfinite_steps, a run that makes no progress for this many steps stops anyway.
MAX_CONSECUTIVE_SKIPPED_STEPS = 100

# Fine-tuning sees one view with the reference's fine-tuning augmentation: crop and flip.
FINETUNE_OPS = ("crop", "flip")


@dataclasses.dataclass(frozen=True)
class Schedule:
    total_steps: int
    warmup_steps: int
    checkpoint_steps: int
    steps_per_loop: int

    @property
    def ends_in_warmup(self) -> bool:
        return self.warmup_steps >= self.total_steps


def warmup_warning(schedule: Schedule, config: RunConfig) -> str:
    """What a run that ends before its warmup does (the reference trains such runs too, e.g.
    its README's commands with a few --train_steps as a smoke test)."""
    peak_learning_rate = scaled_learning_rate(
        config.optimizer.learning_rate, config.train.train_batch_size, config.optimizer.learning_rate_scaling)
    last = peak_learning_rate * (schedule.total_steps - 1) / schedule.warmup_steps
    return (f"warning: OptimizerConfig.warmup_epochs={config.optimizer.warmup_epochs:g} gives {schedule.warmup_steps} "
            f"warmup steps, not fewer than the {schedule.total_steps} training steps: the learning rate stays in its "
            f"linear warmup, rising to {last:.4g} (the peak {peak_learning_rate:.4g} is never reached), and the cosine decay "
            f"never starts")


class Monitor(Protocol):
    """Something measured on the model between loops of steps (the kNN monitor, say).

    Called after every `every_n_steps` steps and after the last; returns metrics that
    are logged with that step's. Its time is left out of the training rate.
    """

    every_n_steps: int

    def __call__(self, step: int) -> dict[str, float]: ...


def plan_steps(config: RunConfig, num_examples: int) -> Schedule:
    """Step counts as the reference derives them, with errors that name the config fields."""
    train = config.train
    total, warmup = steps_from_epochs(
        num_examples, train.train_batch_size, train.train_epochs,
        warmup_epochs=config.optimizer.warmup_epochs, train_steps=train.train_steps,
    )
    epoch_steps = max(1, round(num_examples / train.train_batch_size))
    checkpoint_steps = train.checkpoint_steps or train.checkpoint_epochs * epoch_steps
    return Schedule(total, warmup, checkpoint_steps, train.steps_per_loop or checkpoint_steps)


def train_augment_config(config: RunConfig) -> tuple[AugmentConfig, int]:
    if config.train.train_mode in ("finetune", "distill"):  # The student sees the view the teacher sees.
        return dataclasses.replace(config.augment, ops=FINETUNE_OPS), 1
    return config.augment, 2


def gradient_cache_chunks(train: TrainConfig, per_replica_batch_size: int) -> int:
    """How many chunks a replica's batch runs in (1 without gradient caching)."""
    chunk = train.gradient_cache_chunk_size
    if not chunk:
        return 1
    if per_replica_batch_size % chunk:
        raise ConfigError("TrainConfig.gradient_cache_chunk_size",
                          f"must divide the per-replica batch of {per_replica_batch_size} images "
                          f"(TrainConfig.train_batch_size over the replicas)", value=chunk)
    return per_replica_batch_size // chunk


def uses_supervised_head(config: RunConfig, source: Source) -> bool:
    """Whether the step trains the supervised head on the source's labels."""
    if config.train.train_mode == "distill":
        if config.train.distill_label_weight and not source.num_classes:
            raise ConfigError("TrainConfig.distill_label_weight", f"needs labels, but {source.name} has none",
                              value=config.train.distill_label_weight)
        return bool(config.train.distill_label_weight)
    if config.train.train_mode == "finetune":
        if not source.num_classes:
            raise ConfigError("TrainConfig.train_mode", f"needs labels, but {source.name} has none "
                                                        f"(SourceConfig.dataset, SourceConfig.split)", value="finetune")
        return True
    return bool(config.train.lineareval_while_pretraining and source.num_classes)


def labelled_subset(config: RunConfig, source: Source, chief: bool, printer: Callable[[str], None]) -> Source:
    """The part of the train split whose labels fine-tuning may use (TrainConfig.label_fraction, ...);
    when distilling, every image, with the labels of that part only.

    The ids go to model_dir/subset_ids.json; a resumed run reads them back, so the
    subset cannot change under it, and TrainConfig.subset_ids lets another run use the same.
    """
    train = config.train
    ids_path = os.path.join(config.model_dir, SUBSET_IDS_FILE)
    reuse = ids_path if tf.io.gfile.exists(ids_path) else train.subset_ids
    if reuse:
        if not tf.io.gfile.exists(reuse):
            raise ConfigError("TrainConfig.subset_ids", "names no file", value=reuse)
        ids = subset.read_subset_ids(reuse)
        if ids.size and ids.max() >= source.num_examples:
            raise ConfigError("TrainConfig.subset_ids", f"holds ids up to {ids.max()} but {source.name} has "
                                                        f"{source.num_examples} examples (another dataset or split?)",
                              value=reuse)
        origin = f"ids from {reuse}"
    else:
        labels = subset.read_labels(source)
        ids = subset.select_subset(labels, fraction=train.label_fraction or None,
                                   per_class=train.examples_per_class or None, seed=train.seed)
        origin = (f"{train.label_fraction:g} of each class" if train.label_fraction
                  else f"{train.examples_per_class} per class") + f", seed {train.seed}"
    if chief and reuse != ids_path:
        labels = labels if not reuse else subset.read_labels(source)
        subset.write_subset_ids(ids_path, ids, source_name=source.name, split=config.source.split, seed=train.seed,
                                fraction=train.label_fraction or None, per_class=train.examples_per_class or None,
                                labels=labels)
    if config.train.train_mode == "distill":  # Distillation sees every image; only these keep their labels.
        printer(f"labelled images: {ids.size} of {source.num_examples} ({origin}) add the cross-entropy; ids in "
                f"{ids_path}")
        return subset.keep_labels_of(source, ids, unlabelled=UNLABELLED)
    printer(f"labelled subset: {ids.size} of {source.num_examples} examples ({origin}); ids in {ids_path}")
    return subset.subset_source(source, ids)


class Trainer:
    """Builds a run's model, optimizer, data and checkpoints under one strategy; `train()` runs it."""

    def __init__(self, config: RunConfig, strategy: tf.distribute.Strategy, printer: Callable[[str], None] = print):
        if config.train.precision not in PRECISIONS:
            raise ConfigError("TrainConfig.precision", "must be resolved to one of "
                              f"{PRECISIONS} first (simclr_tf.precision.resolve_precision)", value=config.train.precision)
        self.config = config
        self.strategy = strategy
        self.printer = printer
        self.source = build_source(config.source)
        if config.train.uses_label_subset:
            self.source = labelled_subset(config, self.source, is_chief(strategy), printer)
        self.global_batch_size = config.train.train_batch_size
        self.per_replica_batch_size = per_replica_batch_size(
            self.global_batch_size, strategy.num_replicas_in_sync, "TrainConfig.train_batch_size"
        )
        self.num_chunks = gradient_cache_chunks(config.train, self.per_replica_batch_size)
        if config.train.train_mode != "pretrain":  # One view per image: the batch can be odd.
            check_cpu_gradient_batch(self.per_replica_batch_size // self.num_chunks, strategy,
                                     "TrainConfig.gradient_cache_chunk_size" if self.num_chunks > 1
                                     else "TrainConfig.train_batch_size")
        self.schedule = plan_steps(config, self.source.num_examples)
        if self.schedule.ends_in_warmup and is_chief(strategy):
            printer(warmup_warning(self.schedule, config))
        supervised = uses_supervised_head(config, self.source)
        num_classes = self.source.num_classes if supervised else None
        self.teacher = None
        if config.train.train_mode == "distill":
            self.teacher = Teacher(config.train.teacher, strategy, config.augment.image_size)
            if supervised and self.teacher.num_classes != num_classes:
                raise ConfigError("TrainConfig.teacher", f"has {self.teacher.num_classes} classes, the labels of "
                                  f"{self.source.name} {num_classes}", value=config.train.teacher)
            num_classes = self.teacher.num_classes
            # Building a teacher model draws from the seeded generators, loading a module does not: the
            # student's initial weights must not depend on which the teacher is.
            keras.utils.set_random_seed(config.train.seed)
        with strategy.scope():
            self.model = build_model(
                config.model,
                image_size=config.augment.image_size,
                num_classes=num_classes,
                train_mode=config.train.train_mode,
                num_replicas=strategy.num_replicas_in_sync,
            )
            if config.train.train_mode != "pretrain":  # Distillation: only head layers its logits do not read.
                freeze_for_finetuning(self.model, config.train.fine_tune_after_block if config.train.train_mode
                                      == "finetune" else -1, config.model.ft_proj_selector)
            exclusions = lars_exclusions(self.model)
            self.weight_decay_summary = describe_weight_decay(
                config.optimizer.optimizer, exclusions, self.model, config.optimizer.weight_decay)
            self.optimizer = build_optimizer(
                config.optimizer,
                global_batch_size=self.global_batch_size,
                warmup_steps=self.schedule.warmup_steps,
                total_steps=self.schedule.total_steps,
                exclusions=exclusions,
            )
            if keras.mixed_precision.global_policy().name == "mixed_float16":
                # float16 gradients underflow without loss scaling; bfloat16 needs none.
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            elif config.train.skip_nonfinite_steps:
                # Keras's loss-scale optimizer applies an update only when every gradient is
                # finite (a cond built to work under distribution strategies). With a scale of
                # 1 that never grows, it is exactly "skip the non-finite step": weights, slots
                # and the step counter stay as they were.
                self.optimizer = keras.optimizers.LossScaleOptimizer(
                    self.optimizer, initial_scale=1.0, dynamic_growth_steps=2**31 - 1)
            # Slots must exist before a checkpoint can restore them.
            self.optimizer.build(self.model.trainable_variables)
        self.step_config = StepConfig(
            train_mode=config.train.train_mode,
            temperature=config.train.temperature,
            hidden_norm=config.train.hidden_norm,
            weight_decay=config.optimizer.weight_decay,
            optimizer_name=config.optimizer.optimizer,
            supervised=supervised,
            distill_temperature=config.train.distill_temperature,
            distill_label_weight=config.train.distill_label_weight,
        )
        self.manager = checkpoints.make_manager(
            self.model, self.optimizer, worker_dir(strategy, config.model_dir), config.train.keep_checkpoint_max
        )

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def restore(self) -> str:
        return checkpoints.restore_or_initialize(
            self.manager,
            init_checkpoint=self.config.checkpoint,
            model=self.model,
            zero_init_logits_layer=self.config.model.zero_init_logits_layer,
        )

    def input_dataset(self, context: tf.distribute.InputContext, start_step: int) -> tf.data.Dataset:
        """One input pipeline's batches of (views, labels), from `start_step` on."""
        augment_config, num_views = train_augment_config(self.config)
        train = self.config.train
        return pretrain_dataset(
            self.source, augment_config, context.get_per_replica_batch_size(self.global_batch_size),
            seed=train.seed, num_views=num_views, shuffle_buffer=train.shuffle_buffer,
            cache=train.cache_dataset, input_context=context,
            start_example=start_step * self.global_batch_size // context.num_input_pipelines,
        )

    def _dataset(self, start_step: int) -> tf.distribute.DistributedDataset:
        return self.strategy.distribute_datasets_from_function(lambda context: self.input_dataset(context, start_step))

    def _write_sample_views(self, writer, step: int) -> None:
        augment_config, num_views = train_augment_config(self.config)
        views, _ = next(iter(pretrain_dataset(
            self.source, augment_config, 4, seed=self.config.train.seed, num_views=num_views,
            shuffle_buffer=self.config.train.shuffle_buffer,
        )))
        with writer.as_default():
            for view in range(num_views):
                tf.summary.image(f"augmented_view_{view + 1}", views[:, view], step=step, max_outputs=4)

    def _make_loop(self):
        strategy = self.strategy
        teacher_logits = self.teacher.logits if self.teacher else None
        if self.config.train.gradient_cache_chunk_size:
            replica_step = make_cached_train_step(self.model, self.optimizer, self.step_config, self.num_chunks,
                                                  teacher_logits)
        else:
            replica_step = make_train_step(self.model, self.optimizer, self.step_config, teacher_logits)
        if self.config.train.jit_compile:
            # Only the step: XLA cannot compile the loop's read from the input iterator.
            replica_step = tf.function(replica_step, jit_compile=True)
        names = metric_names(self.step_config)

        @tf.function
        def train_steps(iterator, num_steps):
            """Runs `num_steps` steps; returns mean metrics and the index of the first step
            whose loss was not finite (-1 if none)."""
            totals = [tf.constant(0.0)] * len(names)
            first_nonfinite = tf.constant(-1)
            for i in tf.range(num_steps):
                views, labels = next(iterator)
                per_replica = strategy.run(replica_step, (views, labels))
                means = [strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica[n], axis=None) for n in names]
                totals = [total + mean for total, mean in zip(totals, means)]
                nonfinite = tf.logical_not(tf.math.is_finite(means[names.index("total_loss")]))
                first_nonfinite = tf.where(tf.logical_and(first_nonfinite < 0, nonfinite), i, first_nonfinite)
            count = tf.cast(num_steps, tf.float32)
            return {name: total / count for name, total in zip(names, totals)}, first_nonfinite

        return train_steps

    def _save(self, step: int, writer) -> str:
        path = self.manager.save(checkpoint_number=step)
        writer.flush()
        return path

    def train(self, monitor: Monitor | None = None) -> dict:
        """Trains from the restored step to the last; returns the last loop's metrics and timing.

        `monitor`, if given, runs every `monitor.every_n_steps` steps and at the end.
        Stops early, with a checkpoint at the current step, on SIGTERM/SIGINT; raises
        NonFiniteLossError (without saving, so the last checkpoint stays good) when the
        loss stops being finite.
        """
        origin = self.restore()
        start_step = step = self.step
        total = self.schedule.total_steps
        chief = is_chief(self.strategy)
        if self.source.skipped:
            self.printer(f"skipped {len(self.source.skipped)} bad files (bad_files=skip), e.g. {self.source.skipped[0]}")
        self.printer(
            f"{self.config.train.train_mode}: {self.source.name}, {self.source.num_examples} examples, "
            f"global batch {self.global_batch_size} over {self.strategy.num_replicas_in_sync} replica(s), "
            f"steps {step}/{total} (warmup {self.schedule.warmup_steps}); {origin}"
        )
        self.printer(self.weight_decay_summary)
        if self.teacher:
            train = self.config.train
            self.printer(f"teacher: {self.teacher.description}, frozen, {self.teacher.num_classes} classes; "
                         f"distillation temperature {train.distill_temperature:g}, label weight "
                         f"{train.distill_label_weight:g}")
        if self.config.train.gradient_cache_chunk_size:
            chunk = self.config.train.gradient_cache_chunk_size
            self.printer(f"gradient cache: {self.num_chunks} chunk(s) of {chunk} images per replica; batch norm "
                         f"normalises each chunk with its own statistics (ghost batches of {chunk} images)")
        writer = tf.summary.create_file_writer(os.path.join(self.config.model_dir, "train")) if chief \
            else tf.summary.create_noop_writer()
        summary = {"step": step, "total_steps": total, "metrics": {}, "seconds": 0.0, "stopped_by": None}
        if step >= total:
            return summary
        if chief:
            self._write_sample_views(writer, step)
        progress = Progress(
            total, self.global_batch_size, step, printer=self.printer,
            log_path=os.path.join(self.config.model_dir, TRAIN_LOG_FILE) if chief else None,
        )
        iterator = iter(self._dataset(step))
        train_steps = self._make_loop()
        started = time.monotonic()
        every = self.schedule.checkpoint_steps
        monitor_every = monitor.every_n_steps if monitor else 0
        stalled = 0  # Steps skipped since the last step that updated the model.
        coordinated = None
        if spans_processes(self.strategy):  # SIGTERM goes to TF's handler; Ctrl-C stays local.
            coordinated = CoordinatedStop(self.strategy, save=lambda: self._save(self.step, writer))
        local_signals = StopRequest.SIGNALS if coordinated is None else (signal.SIGINT,)
        with StopRequest(signals=local_signals) as stop:
            while step < total and not stop and not (coordinated and coordinated.signal_name):
                num_steps = min(self.schedule.steps_per_loop, total - step, every - step % every,
                                monitor_every - step % monitor_every if monitor_every else total)
                results, first_nonfinite = train_steps(iterator, tf.constant(num_steps))
                previous_step, step = step, self.step
                skipped = num_steps - (step - previous_step)
                stalled = stalled + skipped if step == previous_step else 0
                if int(first_nonfinite) >= 0 and (
                        not self.config.train.skip_nonfinite_steps or stalled >= MAX_CONSECUTIVE_SKIPPED_STEPS):
                    raise NonFiniteLossError(previous_step + int(first_nonfinite) + 1, self.manager.latest_checkpoint)
                metrics = {name: float(value) for name, value in results.items()}
                if self.config.train.skip_nonfinite_steps:
                    summary["skipped_steps"] = summary.get("skipped_steps", 0) + skipped
                    metrics["skipped_steps"] = float(summary["skipped_steps"])
                    # Means over the loop would be NaN; report the loop's finite steps only when all were.
                    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
                learning_rate = float(self.optimizer.learning_rate)
                if monitor_every and (step % monitor_every == 0 or step >= total):
                    monitor_started = time.monotonic()
                    metrics.update(monitor(step))
                    # Not training time: keep img/s and the ETA honest.
                    progress.discount(time.monotonic() - monitor_started)
                with writer.as_default():
                    for name, value in metrics.items():
                        tf.summary.scalar(f"train/{name}", value, step=step)
                    tf.summary.scalar("learning_rate", learning_rate, step=step)
                if step % every == 0 or step >= total:
                    self._save(step, writer)
                progress.report(step, {**metrics, "learning_rate": learning_rate})
                summary["metrics"] = metrics
                if coordinated is not None:
                    coordinated.check()  # Saves at the step the workers agreed on, if one was told to stop.
            stopped_by = stop.signal_name or (coordinated.signal_name if coordinated else None)
            if stopped_by and (step < total or coordinated is not None):
                path = self.manager.latest_checkpoint
                if step % every and coordinated is None:  # The coordinated stop has saved already.
                    path = self._save(step, writer)
                self.printer(f"stopped by {stopped_by} at step {step}/{total}; checkpoint {path}; "
                             f"run the same command again to resume")
                summary["stopped_by"] = stopped_by
        writer.flush()
        seconds = time.monotonic() - started
        logging.info("trained steps %d..%d in %.1f s", start_step, step, seconds)
        summary.update(step=step, seconds=seconds,
                       images_per_second=(step - start_step) * self.global_batch_size / seconds if seconds else 0.0)
        return summary


class NonFiniteLossError(UserError, RuntimeError):
    """The loss became NaN or infinite; nothing after the last good checkpoint was saved."""

    def __init__(self, step: int, last_checkpoint: str | None):
        self.step = step
        self.last_checkpoint = last_checkpoint
        kept = f"the last good checkpoint {last_checkpoint} is intact" if last_checkpoint else "no checkpoint was saved yet"
        super().__init__(
            f"the loss became non-finite at step {step}; stopped without saving, {kept}. "
            f"Lower OptimizerConfig.learning_rate or raise OptimizerConfig.warmup_epochs, then resume"
        )
