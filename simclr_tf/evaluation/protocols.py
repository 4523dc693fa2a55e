"""One evaluation task on a frozen encoder: features of a train and an eval split, then the
chosen protocols (linear classifier, kNN) on them. Used by the evaluation and transfer CLIs."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

from simclr_tf.data import SourceConfig
from simclr_tf.evaluation.features import DEFAULT_OUTPUT, FrozenEncoder, cached_encode
from simclr_tf.evaluation.knn import KNNConfig, knn_eval
from simclr_tf.evaluation.linear_eval import LinearEvalConfig, linear_eval
from simclr_tf.evaluation.logistic import LogisticConfig, logistic_eval
from simclr_tf.evaluation.multilabel_logistic import multilabel_logistic_eval

PROTOCOLS = ("linear", "knn")
CLASSIFIERS = ("adam", "lbfgs")


@dataclasses.dataclass(frozen=True)
class EvalTask:
    """What to evaluate on. `eval_source` defaults to `train_source`'s dataset with `eval_split`
    (give it for image folders, whose train and test images live in different folders)."""

    name: str
    train_source: SourceConfig
    eval_source: SourceConfig
    protocols: tuple[str, ...] = ("linear",)
    classifier: str = "adam"
    output: str = DEFAULT_OUTPUT
    image_size: int = 0  # 0: the encoder's training size.
    batch_size: int = 256
    max_train_examples: int = 0
    max_eval_examples: int = 0
    linear: LinearEvalConfig = LinearEvalConfig()
    logistic: LogisticConfig = LogisticConfig()
    knn: KNNConfig = KNNConfig()

    def __post_init__(self):
        unknown = set(self.protocols) - set(PROTOCOLS)
        if not self.protocols or unknown:
            raise ValueError(f"protocols must be a non-empty subset of {PROTOCOLS}, got {self.protocols!r}")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {self.classifier!r}")
        for name in ("image_size", "max_train_examples", "max_eval_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if self.multi_label and (self.protocols != ("linear",) or self.classifier != "lbfgs"):
            raise ValueError(f"a multi-label task (train_source.multi_label) is evaluated by per-class logistic "
                             f"regression and mAP: protocols must be ('linear',) and classifier 'lbfgs', got "
                             f"{self.protocols!r} and {self.classifier!r}")

    @property
    def multi_label(self) -> bool:
        return self.train_source.multi_label


def run_task(encoder: FrozenEncoder, task: EvalTask, *, cache_dir: str | None = None,
             printer: Callable[[str], None] = print) -> dict:
    """Runs `task` on `encoder`; returns a JSON-ready dict with one entry per protocol."""
    started = time.monotonic()
    common = dict(cache_dir=cache_dir, output=task.output, image_size=task.image_size,
                  batch_size=task.batch_size, printer=printer)
    train_features, train_labels, train = cached_encode(
        encoder, task.train_source, max_examples=task.max_train_examples, **common)
    eval_features, eval_labels, evaluation = cached_encode(
        encoder, task.eval_source, max_examples=task.max_eval_examples, **common)
    num_classes = train.num_classes
    if not num_classes or evaluation.num_classes != num_classes or evaluation.multi_label != train.multi_label:
        raise ValueError(f"{task.name}: train ({train.name}, {train.num_classes} classes) and eval "
                         f"({evaluation.name}, {evaluation.num_classes} classes) need the same labels")
    result: dict = {
        "task": task.name, "encoder": encoder.describe, "output": task.output,
        "train": f"{train.name}:{task.train_source.split}", "eval": f"{evaluation.name}:{task.eval_source.split}",
        "num_classes": num_classes, "num_train": int(train_labels.shape[0]), "num_eval": int(eval_labels.shape[0]),
    }
    if task.multi_label:
        result["linear"] = multilabel_logistic_eval(train_features, train_labels, eval_features, eval_labels,
                                                    task.logistic)
        printer(f"{task.name}: linear ({result['linear']['classifier']}) VOC2007 11-point mAP "
                f"{result['linear']['map']:.4f}")
    elif "linear" in task.protocols:
        if task.classifier == "lbfgs":
            result["linear"] = logistic_eval(train_features, train_labels, eval_features, eval_labels,
                                             num_classes, task.logistic)
        else:
            result["linear"] = {"classifier": "adam_softmax", **linear_eval(
                train_features, train_labels, eval_features, eval_labels, num_classes, task.linear).as_dict()}
        printer(f"{task.name}: linear ({result['linear']['classifier']}) top-1 {result['linear']['top1']:.4f}, "
                f"top-5 {result['linear']['top5']:.4f}")
    if "knn" in task.protocols:
        result["knn"] = knn_eval(train_features, train_labels, eval_features, eval_labels, num_classes,
                                 task.knn).as_dict()
        printer(f"{task.name}: kNN (k={task.knn.k}, T={task.knn.temperature}) top-1 {result['knn']['top1']:.4f}, "
                f"top-5 {result['knn']['top5']:.4f}")
    result["seconds"] = time.monotonic() - started
    return result
