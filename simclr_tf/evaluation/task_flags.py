"""absl flags of one evaluation task, on any FlagValues: the evaluation CLI parses them from its
command line, the transfer CLI from each task's flagfile (flags/transfer/*.cfg) in turn."""

from __future__ import annotations

import numpy as np
from absl import flags

from simclr_tf.data import SourceConfig
from simclr_tf.evaluation.knn import KNNConfig
from simclr_tf.evaluation.linear_eval import LinearEvalConfig
from simclr_tf.evaluation.logistic import LogisticConfig
from simclr_tf.evaluation.protocols import CLASSIFIERS, PROTOCOLS, EvalTask
from simclr_tf.flag_defs import FlagError
from simclr_tf.models import REPRESENTATION

TRANSFER_MODES = ("linear", "finetune")


def define_task_flags(values: flags.FlagValues) -> None:
    define = dict(flag_values=values)
    flags.DEFINE_string("task_name", None, "Name of the task in results (default: the dataset).", **define)
    flags.DEFINE_string("dataset", None, "fashion_mnist_offline, folder:/path or a tfds name (default with "
                        "--model_dir: the run's dataset).", **define)
    flags.DEFINE_string("train_split", "train", "Split the classifier (or kNN bank) is fitted on.", **define)
    flags.DEFINE_string("eval_split", "test", "Split the accuracy is measured on.", **define)
    flags.DEFINE_string("eval_dataset", None, "Dataset of the eval split when it differs (image folders).", **define)
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir (or the IDX directory).", **define)
    flags.DEFINE_bool("multi_label", False, "Each image holds any number of the classes (a tfds dataset with a "
                      "`labels` sequence, e.g. voc/2007): one logistic classifier per class (--classifier=lbfgs), "
                      "scored by VOC2007 11-point mAP, images whose objects of a class are all difficult left out "
                      "of that class.", **define)
    flags.DEFINE_list("protocols", ["linear"], f"Any of {', '.join(PROTOCOLS)}.", **define)
    flags.DEFINE_enum("classifier", "adam", CLASSIFIERS,
                      "adam: softmax classifier, Adam, on standardised features (fast). lbfgs: the paper's transfer "
                      "protocol, L2 logistic regression by L-BFGS with the L2 strength chosen on a held-out part "
                      "of the train split.", **define)
    flags.DEFINE_string("output", REPRESENTATION, "Encoder output to evaluate (spatial ones are average-pooled).",
                        **define)
    flags.DEFINE_integer("image_size", 0, "Evaluation image size; 0 = the encoder's training size (required for "
                         "--module).", **define)
    flags.DEFINE_integer("eval_batch_size", 256, "Batch size of feature extraction.", **define)
    flags.DEFINE_integer("max_train_examples", 0, "Use only the first N train examples (0 = all).", **define)
    flags.DEFINE_integer("max_eval_examples", 0, "Use only the first N eval examples (0 = all).", **define)
    flags.DEFINE_integer("linear_epochs", 100, "adam classifier: epochs.", **define)
    flags.DEFINE_float("linear_learning_rate", 1e-3, "adam classifier: learning rate.", **define)
    flags.DEFINE_integer("linear_batch_size", 256, "adam classifier: batch size.", **define)
    flags.DEFINE_float("linear_weight_decay", 0.0, "adam classifier: L2 on the weights.", **define)
    flags.DEFINE_integer("l2_grid_size", 45, "lbfgs: L2 strengths tried, log-spaced in [1e-6, 1e5] (paper: 45).",
                         **define)
    flags.DEFINE_float("validation_fraction", 0.2, "lbfgs: part of each class held out to choose the L2 strength.",
                       **define)
    flags.DEFINE_integer("knn_k", 200, "kNN: neighbours (Wu et al. 2018).", **define)
    flags.DEFINE_float("knn_temperature", 0.1, "kNN: vote weight exp(cosine / T).", **define)
    flags.DEFINE_integer("seed", 0, "Seed of classifiers and hold-outs.", **define)
    # Transfer by fine-tuning (python -m simclr_tf.evaluation.transfer --mode=finetune).
    flags.DEFINE_integer("finetune_steps", 0, "Fine-tuning steps (0: finetune_epochs).", **define)
    flags.DEFINE_integer("finetune_epochs", 30, "Fine-tuning epochs when finetune_steps is 0.", **define)
    flags.DEFINE_integer("finetune_batch_size", 256, "Fine-tuning global batch size.", **define)
    flags.DEFINE_float("finetune_learning_rate", 0.05, "Fine-tuning base learning rate (x batch / 256).", **define)
    flags.DEFINE_float("finetune_weight_decay", 0.0, "Fine-tuning weight decay.", **define)


def task_from_flags(values: flags.FlagValues, default_dataset: str | None = None) -> EvalTask:
    dataset = values.dataset or default_dataset
    if not dataset:
        raise FlagError("--dataset must be set (or give --model_dir, whose run names one)")
    if values.l2_grid_size < 1:
        raise FlagError(f"--l2_grid_size must be >= 1, got {values.l2_grid_size}")

    def source(name: str, split: str) -> SourceConfig:
        kwargs = dict(dataset=name, split=split, multi_label=values.multi_label)
        if values.data_dir:
            kwargs["data_dir"] = values.data_dir
        return SourceConfig(**kwargs)

    try:
        return EvalTask(
            name=values.task_name or dataset,
            train_source=source(dataset, values.train_split),
            eval_source=source(values.eval_dataset or dataset, "train" if values.eval_dataset and
                               values.eval_dataset.startswith(("folder:", "/")) else values.eval_split),
            protocols=tuple(values.protocols),
            classifier=values.classifier,
            output=values.output,
            image_size=values.image_size,
            batch_size=values.eval_batch_size,
            max_train_examples=values.max_train_examples,
            max_eval_examples=values.max_eval_examples,
            linear=LinearEvalConfig(epochs=values.linear_epochs, batch_size=values.linear_batch_size,
                                    learning_rate=values.linear_learning_rate,
                                    weight_decay=values.linear_weight_decay, seed=values.seed),
            logistic=LogisticConfig(l2_values=tuple(np.logspace(-6, 5, values.l2_grid_size)),
                                    validation_fraction=values.validation_fraction, seed=values.seed),
            knn=KNNConfig(k=values.knn_k, temperature=values.knn_temperature),
        )
    except ValueError as error:
        raise FlagError(f"task {values.task_name or dataset}: {error}") from error


def parse_task(path: str, overrides: list[str], image_size: int) -> flags.FlagValues:
    """The flags of a task flagfile, then `image_size` (when > 0), then `overrides` (e.g. "--data_dir=X")."""
    values = flags.FlagValues()
    define_task_flags(values)
    argv = ["transfer", f"--flagfile={path}"] + ([f"--image_size={image_size}"] if image_size else []) + overrides
    try:
        values(argv)
    except flags.Error as error:
        raise FlagError(f"{path}: {error}") from error
    return values
