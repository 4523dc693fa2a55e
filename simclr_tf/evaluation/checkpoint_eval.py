"""Evaluation of a checkpoint: the supervised head's top-1/top-5 on the eval split and,
optionally, the linear evaluation of the frozen encoder next to a random encoder's.

Writes result.json (and result_<step>.json) to model_dir, as the reference does.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import tensorflow as tf

from simclr_tf.config import RunConfig
from simclr_tf.data import build_source
from simclr_tf.errors import ConfigError, EvaluationError
from simclr_tf.evaluation.features import encoder_features
from simclr_tf.evaluation.linear_eval import LinearEvalConfig, linear_eval, topk_accuracy
from simclr_tf.evaluation.predict import predict
from simclr_tf.io_utils import write_json_atomically
from simclr_tf.models import SimCLRModel
from simclr_tf.run_dir import RESULT_FILE, CheckpointError, latest_checkpoint, resolve_checkpoint, step_of
from simclr_tf.training import checkpoints
from simclr_tf.training.builders import build_model
from simclr_tf.training.workers import is_chief


def _linear_eval(strategy, model, train_source, eval_source, config) -> dict:
    started = time.monotonic()
    size, batch = config.augment.image_size, config.eval.eval_batch_size
    train_features, train_labels = encoder_features(strategy, model, train_source, image_size=size,
                                                    global_batch_size=batch)
    eval_features, eval_labels = encoder_features(strategy, model, eval_source, image_size=size,
                                                  global_batch_size=batch)
    result = linear_eval(
        train_features, train_labels, eval_features, eval_labels, eval_source.num_classes,
        LinearEvalConfig(epochs=config.eval.linear_eval_epochs, seed=config.train.seed),
    )
    return {**result.as_dict(), "seconds_with_features": time.monotonic() - started}


def evaluate(
    config: RunConfig,
    strategy: tf.distribute.Strategy,
    checkpoint_path: str | None = None,
    printer: Callable[[str], None] = print,
) -> dict:
    """Evaluates `checkpoint_path` (default: newest in model_dir, else RunConfig.checkpoint)."""
    eval_source = build_source(dataclasses.replace(config.source, split=config.eval.eval_split))
    if not eval_source.num_classes:
        raise EvaluationError(f"EvalConfig.eval_split={config.eval.eval_split}: {eval_source.name} has no labels "
                              f"to evaluate against")
    path = checkpoint_path or latest_checkpoint(config.model_dir) or (
        resolve_checkpoint(config.checkpoint) if config.checkpoint else None)
    if path is None:
        raise CheckpointError("model_dir", config.model_dir,
                              "no checkpoint to evaluate in it (train first, or name one with the checkpoint)")
    replicas = strategy.num_replicas_in_sync
    if config.eval.eval_batch_size % replicas:
        raise ConfigError("EvalConfig.eval_batch_size", f"is not divisible by the {replicas} replicas",
                          value=config.eval.eval_batch_size)

    # Pretraining on unlabeled data trains no head, whatever TrainConfig.lineareval_while_pretraining says.
    has_supervised_head = checkpoints.supervised_classes(path) is not None

    def new_model() -> SimCLRModel:
        with strategy.scope():
            return build_model(
                config.model, image_size=config.augment.image_size,
                num_classes=eval_source.num_classes if has_supervised_head else None,
                train_mode=config.train.train_mode, num_replicas=replicas,
            )

    model = new_model()
    checkpoints.restore_model(model, path)
    step = step_of(path)
    result: dict = {"global_step": step, "checkpoint": path, "eval_split": config.eval.eval_split}

    if has_supervised_head:
        outputs, labels = predict(
            strategy, lambda images: {"logits": model(images, training=False)["logits_sup"]}, eval_source,
            image_size=config.augment.image_size, global_batch_size=config.eval.eval_batch_size,
            max_steps=config.eval.eval_steps,
        )
        result.update(
            label_top_1_accuracy=topk_accuracy(outputs["logits"], labels, 1),
            label_top_5_accuracy=topk_accuracy(outputs["logits"], labels, 5),
            num_eval_examples=int(labels.size),
        )
        printer(f"eval at step {step}: supervised head top-1 {result['label_top_1_accuracy']:.4f}, "
                f"top-5 {result['label_top_5_accuracy']:.4f} on {labels.size} examples of {eval_source.name}:{config.eval.eval_split}")

    if config.eval.linear_eval:
        train_source = build_source(config.source)
        result["linear_eval"] = _linear_eval(strategy, model, train_source, eval_source, config)
        printer(f"linear eval of the frozen encoder: top-1 {result['linear_eval']['top1']:.4f}, "
                f"top-5 {result['linear_eval']['top5']:.4f}")
        if config.eval.compare_random_encoder:
            result["linear_eval_random_encoder"] = _linear_eval(strategy, new_model(), train_source, eval_source, config)
            random_top1 = result["linear_eval_random_encoder"]["top1"]
            printer(f"linear eval of a random encoder (same architecture): top-1 {random_top1:.4f}, "
                    f"top-5 {result['linear_eval_random_encoder']['top5']:.4f}")
            printer(f"==> linear-eval top-1 on {eval_source.name}:{config.eval.eval_split}: pretrained "
                    f"{result['linear_eval']['top1']:.2%} vs random encoder {random_top1:.2%}")

    if is_chief(strategy):
        write_json_atomically(os.path.join(config.model_dir, RESULT_FILE), result)
        write_json_atomically(os.path.join(config.model_dir, f"result_{step}.json"), result)
        writer = tf.summary.create_file_writer(os.path.join(config.model_dir, "eval"))
        with writer.as_default():
            for name, value in result.items():
                if isinstance(value, float):
                    tf.summary.scalar(f"eval/{name}", value, step=step)
            for name in ("linear_eval", "linear_eval_random_encoder"):
                if name in result:
                    tf.summary.scalar(f"eval/{name}_top_1_accuracy", result[name]["top1"], step=step)
        writer.flush()
    return result
