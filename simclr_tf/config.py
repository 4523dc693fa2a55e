"""The run configuration: frozen dataclasses, validated at construction.

The CLI (simclr_tf.run) builds one `RunConfig` from absl flags, writes it to
model_dir, and hands each part to the code that needs it. Field names follow
google-research/simclr's flags where the meaning is the same.
"""

import dataclasses
import json
import typing
from typing import Any, NoReturn

from simclr_tf.augment import AugmentConfig
from simclr_tf.data import SourceConfig
from simclr_tf.errors import ConfigError, fail
from simclr_tf.io_utils import write_json_atomically

RESNET_DEPTHS = (18, 34, 50, 101, 152, 200)
OPTIMIZERS = ("lars", "momentum", "adam")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# "auto" is resolved to one of PRECISIONS for the run's devices (simclr_tf.precision) before training.
PRECISION_CHOICES = ("auto",) + PRECISIONS
# How much the ResNet downsamples: stride-2 stem conv and max-pool, then stages 2-4 (CIFAR stem: 3x3 conv, no pool).
ENCODER_STRIDE = 32
ENCODER_STRIDE_CIFAR_STEM = 8


def _fail(config: Any, name: str, value: Any, requirement: str) -> NoReturn:
    fail(f"{type(config).__name__}.{name}", value, requirement)


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
    # Batch variance as E[x^2] - E[x]^2 also on one device: the arithmetic of cross-replica BN, and of
    # the original code's SyncBatchNormalization. Imported original models set it, so that their
    # batch-statistics outputs equal the original's to float32 rounding (two passes differ by ~2e-5).
    one_pass_batch_norm: bool = False

    def __post_init__(self):
        if self.resnet_depth not in RESNET_DEPTHS:
            _fail(self, "resnet_depth", self.resnet_depth, f"must be one of {RESNET_DEPTHS}")
        if self.width_multiplier <= 0:
            _fail(self, "width_multiplier", self.width_multiplier, "must be > 0")
        if self.proj_head_mode not in ("none", "linear", "nonlinear"):
            _fail(self, "proj_head_mode", self.proj_head_mode, "must be none, linear or nonlinear")
        if not 0 < self.batch_norm_decay < 1:
            _fail(self, "batch_norm_decay", self.batch_norm_decay, "must be in (0, 1)")
        for name in ("proj_out_dim", "num_proj_layers"):
            if getattr(self, name) < 1:
                _fail(self, name, getattr(self, name), "must be >= 1")
        if not 0 <= self.ft_proj_selector <= self.num_proj_layers:
            _fail(self, "ft_proj_selector", self.ft_proj_selector,
                  f"must be in [0, ModelConfig.num_proj_layers={self.num_proj_layers}]")
        for name in ("sk_ratio", "se_ratio"):
            if not 0 <= getattr(self, name) < 1:
                _fail(self, name, getattr(self, name), "must be in [0, 1) (0: off)")


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
            _fail(self, "optimizer", self.optimizer, f"must be one of {OPTIMIZERS}")
        if self.learning_rate_scaling not in ("linear", "sqrt"):
            _fail(self, "learning_rate_scaling", self.learning_rate_scaling, "must be linear or sqrt")
        if self.learning_rate <= 0:
            _fail(self, "learning_rate", self.learning_rate, "must be > 0")
        if self.warmup_epochs < 0:
            _fail(self, "warmup_epochs", self.warmup_epochs, "must be >= 0")
        if self.weight_decay < 0:
            _fail(self, "weight_decay", self.weight_decay, "must be >= 0")


TRAIN_MODES = ("pretrain", "finetune", "distill")


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
    precision: str = "float32"  # or "auto", which simclr_tf.precision.resolve_precision turns into one of these
    precision_reason: str = ""  # why: "set explicitly", or what "auto" found (recorded in config.json)
    deterministic: bool = False
    skip_nonfinite_steps: bool = False
    jit_compile: bool = False  # XLA for the replica step (slower on CPU: benchmarks/train_throughput.py)
    # Gradient caching (simclr_tf.training.gradient_cache): each replica's batch runs in chunks of this
    # many images, so the batch is not limited by activation memory; 0 = off.
    gradient_cache_chunk_size: int = 0
    # Distillation (train_mode "distill", SimCLRv2): the frozen teacher (a fine-tuned run, checkpoint or
    # exported module) gives soft labels softmax(logits / distill_temperature) for every training image;
    # loss = (1 - distill_label_weight) * distillation + distill_label_weight * cross-entropy(labels).
    teacher: str | None = None
    distill_temperature: float = 1.0
    distill_label_weight: float = 0.0
    # Semi-supervised fine-tuning on part of the labels: a class-balanced subset of the train
    # split drawn with `seed` (or the ids of `subset_ids`, a file an earlier run wrote). When
    # distilling with distill_label_weight > 0: the images whose labels the cross-entropy uses
    # (distillation still runs on every image).
    label_fraction: float = 0.0
    examples_per_class: int = 0
    subset_ids: str | None = None

    @property
    def uses_label_subset(self) -> bool:
        return bool(self.label_fraction or self.examples_per_class or self.subset_ids)

    def __post_init__(self):
        if self.train_mode not in TRAIN_MODES:
            _fail(self, "train_mode", self.train_mode, f"must be one of {TRAIN_MODES}")
        if self.train_mode == "distill" and not self.teacher:
            _fail(self, "teacher", self.teacher, "must name the teacher when TrainConfig.train_mode='distill'")
        if self.teacher and self.train_mode != "distill":
            _fail(self, "teacher", self.teacher, "is only used by TrainConfig.train_mode='distill'")
        if self.distill_temperature <= 0:
            _fail(self, "distill_temperature", self.distill_temperature, "must be > 0")
        if not 0 <= self.distill_label_weight <= 1:
            _fail(self, "distill_label_weight", self.distill_label_weight, "must be in [0, 1]")

        if self.train_batch_size < 1:
            _fail(self, "train_batch_size", self.train_batch_size, "must be >= 1")
        if self.train_epochs < 1 and self.train_steps < 1:
            _fail(self, "train_epochs", self.train_epochs, "must be >= 1 when TrainConfig.train_steps is 0")
        if self.temperature <= 0:
            _fail(self, "temperature", self.temperature, "must be > 0")
        if not -1 <= self.fine_tune_after_block <= 4:
            _fail(self, "fine_tune_after_block", self.fine_tune_after_block, "must be in [-1, 4]")
        if self.precision not in PRECISION_CHOICES:
            _fail(self, "precision", self.precision, f"must be one of {PRECISION_CHOICES}")
        for name in ("checkpoint_steps", "steps_per_loop", "shuffle_buffer", "train_steps", "gradient_cache_chunk_size"):
            if getattr(self, name) < 0:
                _fail(self, name, getattr(self, name), "must be >= 0")
        if self.keep_checkpoint_max < 1:
            _fail(self, "keep_checkpoint_max", self.keep_checkpoint_max, "must be >= 1")
        if not 0 <= self.label_fraction <= 1:
            _fail(self, "label_fraction", self.label_fraction, "must be in (0, 1] (0: all labels)")
        if self.examples_per_class < 0:
            _fail(self, "examples_per_class", self.examples_per_class, "must be >= 0 (0: all labels)")
        if sum(map(bool, (self.label_fraction, self.examples_per_class, self.subset_ids))) > 1:
            _fail(self, "label_fraction", self.label_fraction, "cannot be combined with TrainConfig.examples_per_class or TrainConfig.subset_ids")
        if self.uses_label_subset and not (self.train_mode == "finetune" or (
                self.train_mode == "distill" and self.distill_label_weight)):
            _fail(self, "label_fraction", self.label_fraction or self.examples_per_class or self.subset_ids,
                  "(or TrainConfig.examples_per_class, TrainConfig.subset_ids) selects labels to fine-tune on, or "
                  "the labelled images of distillation: needs TrainConfig.train_mode='finetune', or 'distill' with "
                  "TrainConfig.distill_label_weight > 0")


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
                _fail(self, name, getattr(self, name), "must be >= 0")
        if self.knn_k < 1:
            _fail(self, "knn_k", self.knn_k, "must be >= 1")
        if self.knn_temperature <= 0:
            _fail(self, "knn_temperature", self.knn_temperature, "must be > 0")
        if self.eval_batch_size < 1:
            _fail(self, "eval_batch_size", self.eval_batch_size, "must be >= 1")
        if self.eval_steps < 0:
            _fail(self, "eval_steps", self.eval_steps, "must be >= 0")


@dataclasses.dataclass(frozen=True)
class StrategyConfig:
    use_tpu: bool = False
    tpu_name: str | None = None
    tpu_zone: str | None = None
    gcp_project: str | None = None
    cpu_replicas: int = 0  # > 1: split the CPU into this many replicas (tests, demos)

    def __post_init__(self):
        if self.cpu_replicas < 0:
            _fail(self, "cpu_replicas", self.cpu_replicas, "must be >= 0")
        if self.use_tpu and self.cpu_replicas > 1:
            _fail(self, "cpu_replicas", self.cpu_replicas, "cannot be combined with StrategyConfig.use_tpu")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """The SavedModel / TF-Hub module written when training ends (model_dir/saved_model/<step>)."""

    export_hub_module: bool = True
    keep_hub_module_max: int = 1

    def __post_init__(self):
        if self.keep_hub_module_max < 1:
            _fail(self, "keep_hub_module_max", self.keep_hub_module_max, "must be >= 1")


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
    export: ExportConfig = ExportConfig()

    def __post_init__(self):
        if not self.model_dir:
            _fail(self, "model_dir", self.model_dir, "must be set")
        if self.mode not in ("train", "eval", "train_then_eval"):
            _fail(self, "mode", self.mode, "must be train, eval or train_then_eval")
        stride = ENCODER_STRIDE_CIFAR_STEM if self.model.cifar_stem else ENCODER_STRIDE
        if self.augment.image_size < stride:
            stem = "the CIFAR stem" if self.model.cifar_stem else "the ImageNet stem"
            fail("AugmentConfig.image_size", self.augment.image_size,
                 f"must be >= {stride} for a ResNet with {stem} (ModelConfig.cifar_stem={self.model.cifar_stem}): "
                 f"it downsamples by {stride}, so smaller images leave its last stage less than one pixel")

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, origin: str) -> "RunConfig":
        """The config a `write` recorded (`origin` names the file, for errors).

        Sections or fields missing from `values` (a model_dir of an older version) take
        their defaults; a field this version does not know is a ConfigError, since
        silently dropping it could change what the run means.
        """
        return _from_dict(cls, values, origin, section="")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def write(self, path: str) -> str:
        """Writes the config as JSON, atomically; returns the path."""
        return write_json_atomically(path, dataclasses.asdict(self))


def _from_dict(cls: type, values: Any, origin: str, section: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{cls.__name__}", f"in {origin}{' section ' + section if section else ''} must be a "
                                             f"JSON object, got {values!r}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        names = ", ".join(f"{section}.{name}" if section else name for name in unknown)
        raise ConfigError(cls.__name__, f"in {origin} has fields this version does not know: {names} "
                                        f"(written by a newer simclr_tf?)")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            value = _from_dict(kind, value, origin, f"{section}.{name}" if section else name)
        elif typing.get_origin(kind) is tuple and isinstance(value, list):
            value = tuple(value)  # JSON has no tuples.
        kwargs[name] = value
    return cls(**kwargs)
