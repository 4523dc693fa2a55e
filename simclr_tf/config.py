"""The run configuration: frozen dataclasses, validated at construction.

The CLI (simclr_tf.run) builds one `RunConfig` from absl flags, writes it to
model_dir, and hands each part to the code that needs it. Field names follow
google-research/simclr's flags where the meaning is the same.
"""

import dataclasses
import json
from typing import Any

from simclr_tf.augment import AugmentConfig
from simclr_tf.data import SourceConfig
from simclr_tf.io_utils import write_json_atomically

RESNET_DEPTHS = (18, 34, 50, 101, 152, 200)
OPTIMIZERS = ("lars", "momentum", "adam")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def _fail(name: str, value: Any, requirement: str) -> None:
    raise ValueError(f"{name} {requirement}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    resnet_depth: int = 50
    width_multiplier: float = 1.0
    cifar_stem: bool = False
    sk_ratio: float = 0.0
    se_ratio: float = 0.0
    global_bn: bool = True
    batch_norm_decay: float = 0.9
    proj_head_mode: str = "nonlinear"
    proj_out_dim: int = 128
    num_proj_layers: int = 3
    ft_proj_selector: int = 0
    zero_init_logits_layer: bool = False
    fused_batch_norm: bool = True  # TF's fused kernel where BN is not cross-replica (faster, same math)

    def __post_init__(self):
        if self.resnet_depth not in RESNET_DEPTHS:
            _fail("resnet_depth", self.resnet_depth, f"must be one of {RESNET_DEPTHS}")
        if self.width_multiplier <= 0:
            _fail("width_multiplier", self.width_multiplier, "must be > 0")
        if self.proj_head_mode not in ("none", "linear", "nonlinear"):
            _fail("proj_head_mode", self.proj_head_mode, "must be none, linear or nonlinear")
        if not 0 < self.batch_norm_decay < 1:
            _fail("batch_norm_decay", self.batch_norm_decay, "must be in (0, 1)")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    optimizer: str = "lars"
    learning_rate: float = 0.3
    learning_rate_scaling: str = "linear"
    warmup_epochs: float = 10.0
    weight_decay: float = 1e-6
    momentum: float = 0.9

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            _fail("optimizer", self.optimizer, f"must be one of {OPTIMIZERS}")
        if self.learning_rate_scaling not in ("linear", "sqrt"):
            _fail("learning_rate_scaling", self.learning_rate_scaling, "must be linear or sqrt")
        if self.learning_rate <= 0:
            _fail("learning_rate", self.learning_rate, "must be > 0")
        if self.warmup_epochs < 0:
            _fail("warmup_epochs", self.warmup_epochs, "must be >= 0")
        if self.weight_decay < 0:
            _fail("weight_decay", self.weight_decay, "must be >= 0")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    train_mode: str = "pretrain"
    train_batch_size: int = 512
    train_epochs: int = 100
    train_steps: int = 0
    temperature: float = 0.1
    hidden_norm: bool = True
    lineareval_while_pretraining: bool = True
    fine_tune_after_block: int = -1
    checkpoint_epochs: int = 1
    checkpoint_steps: int = 0
    keep_checkpoint_max: int = 5
    steps_per_loop: int = 0
    seed: int = 0
    shuffle_buffer: int = 10_000
    cache_dataset: bool = False
    precision: str = "float32"
    deterministic: bool = False
    skip_nonfinite_steps: bool = False
    jit_compile: bool = False  # XLA for the replica step (slower on CPU: benchmarks/train_throughput.py)
    # Semi-supervised fine-tuning on part of the labels: a class-balanced subset of the train
    # split drawn with `seed` (or the ids of `subset_ids`, a file an earlier run wrote).
    label_fraction: float = 0.0
    examples_per_class: int = 0
    subset_ids: str | None = None

    @property
    def uses_label_subset(self) -> bool:
        return bool(self.label_fraction or self.examples_per_class or self.subset_ids)

    def __post_init__(self):
        if self.train_mode not in ("pretrain", "finetune"):
            _fail("train_mode", self.train_mode, "must be pretrain or finetune")
        if self.train_batch_size < 1:
            _fail("train_batch_size", self.train_batch_size, "must be >= 1")
        if self.train_epochs < 1 and self.train_steps < 1:
            _fail("train_epochs", self.train_epochs, "must be >= 1 when train_steps is 0")
        if self.temperature <= 0:
            _fail("temperature", self.temperature, "must be > 0")
        if not -1 <= self.fine_tune_after_block <= 4:
            _fail("fine_tune_after_block", self.fine_tune_after_block, "must be in [-1, 4]")
        if self.precision not in PRECISIONS:
            _fail("precision", self.precision, f"must be one of {PRECISIONS}")
        for name in ("checkpoint_steps", "steps_per_loop", "shuffle_buffer", "train_steps"):
            if getattr(self, name) < 0:
                _fail(name, getattr(self, name), "must be >= 0")
        if self.keep_checkpoint_max < 1:
            _fail("keep_checkpoint_max", self.keep_checkpoint_max, "must be >= 1")
        if not 0 <= self.label_fraction <= 1:
            _fail("label_fraction", self.label_fraction, "must be in (0, 1] (0: all labels)")
        if self.examples_per_class < 0:
            _fail("examples_per_class", self.examples_per_class, "must be >= 0 (0: all labels)")
        if sum(map(bool, (self.label_fraction, self.examples_per_class, self.subset_ids))) > 1:
            _fail("label_fraction", self.label_fraction, "cannot be combined with examples_per_class or subset_ids")
        if self.uses_label_subset and self.train_mode != "finetune":
            _fail("label_fraction", self.label_fraction or self.examples_per_class or self.subset_ids,
                  "(or examples_per_class, subset_ids) selects labels to fine-tune on: needs train_mode=finetune")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    eval_split: str = "test"
    eval_batch_size: int = 256
    eval_steps: int = 0
    linear_eval: bool = False
    linear_eval_epochs: int = 100
    compare_random_encoder: bool = False
    # kNN monitor during pretraining (0: off): bank = the first knn_bank_examples of the
    # train split, queries = the first knn_query_examples of eval_split (0: all).
    knn_every_n_steps: int = 0
    knn_k: int = 200
    knn_temperature: float = 0.1
    knn_bank_examples: int = 10_000
    knn_query_examples: int = 2_000

    def __post_init__(self):
        for name in ("knn_every_n_steps", "knn_bank_examples", "knn_query_examples"):
            if getattr(self, name) < 0:
                _fail(name, getattr(self, name), "must be >= 0")
        if self.knn_k < 1:
            _fail("knn_k", self.knn_k, "must be >= 1")
        if self.knn_temperature <= 0:
            _fail("knn_temperature", self.knn_temperature, "must be > 0")
        if self.eval_batch_size < 1:
            _fail("eval_batch_size", self.eval_batch_size, "must be >= 1")
        if self.eval_steps < 0:
            _fail("eval_steps", self.eval_steps, "must be >= 0")


@dataclasses.dataclass(frozen=True)
class StrategyConfig:
    use_tpu: bool = False
    tpu_name: str | None = None
    tpu_zone: str | None = None
    gcp_project: str | None = None
    cpu_replicas: int = 0  # > 1: split the CPU into this many replicas (tests, demos)

    def __post_init__(self):
        if self.cpu_replicas < 0:
            _fail("cpu_replicas", self.cpu_replicas, "must be >= 0")
        if self.use_tpu and self.cpu_replicas > 1:
            _fail("cpu_replicas", self.cpu_replicas, "cannot be combined with use_tpu")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    model_dir: str
    mode: str = "train"
    checkpoint: str | None = None
    source: SourceConfig = SourceConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    strategy: StrategyConfig = StrategyConfig()

    def __post_init__(self):
        if not self.model_dir:
            _fail("model_dir", self.model_dir, "must be set")
        if self.mode not in ("train", "eval", "train_then_eval"):
            _fail("mode", self.mode, "must be train, eval or train_then_eval")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def write(self, path: str) -> str:
        """Writes the config as JSON, atomically; returns the path."""
        return write_json_atomically(path, dataclasses.asdict(self))
