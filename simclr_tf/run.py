"""SimCLR pretraining, fine-tuning and evaluation from the command line.

    python -m simclr_tf.run --flagfile=flags/quickstart_fashion_mnist.cfg
    python -m simclr_tf.run --flagfile=flags/cifar10_resnet18_pretrain.cfg --model_dir=/tmp/r18
    python -m simclr_tf.run --mode=train_then_eval --train_mode=finetune --checkpoint=/tmp/r18 ...

Flag names and defaults follow google-research/simclr's tf2/run.py where the meaning is
the same (README lists the few deliberate differences). Flags are parsed here only:
this module turns them into one RunConfig and hands it to the library.
"""

import contextlib
import dataclasses
import functools
import json
import os
from typing import Callable

import keras
import tensorflow as tf
from absl import app, flags

from simclr_tf import cli_errors, flag_defs, reference_import, run_dir, run_records
from simclr_tf.config import (
    EvalConfig,
    ExportConfig,
    ModelConfig,
    OptimizerConfig,
    RunConfig,
    StrategyConfig,
    TrainConfig,
)
from simclr_tf.data import DataSourceError
from simclr_tf.errors import UserError
from simclr_tf.evaluation.checkpoint_eval import evaluate
from simclr_tf.evaluation.knn_monitor import KNNMonitor
from simclr_tf.precision import resolve_precision
from simclr_tf.run_lock import RunLock
from simclr_tf.strategy import build_strategy, describe
from simclr_tf.training.trainer import Trainer
from simclr_tf.training.workers import is_chief, worker_dir
from tf_hub_export import export_checkpoint

flags.DEFINE_enum("mode", "train", ["train", "eval", "train_then_eval"], "Train, evaluate the newest checkpoint, or both.")
flags.DEFINE_enum("train_mode", "pretrain", ["pretrain", "finetune", "distill"],
                  "SimCLR pretraining, supervised fine-tuning, or distillation of --teacher into this run's model "
                  "(SimCLRv2).")
flags.DEFINE_string("teacher", None,
                    "--train_mode=distill: the frozen teacher giving soft labels - a fine-tuned simclr_tf.run model_dir "
                    "or checkpoint, a module exported by tf_hub_export, or an original google-research/simclr "
                    "SavedModel or checkpoint (imported into model_dir/imported_teacher first).")
flags.DEFINE_float("distill_temperature", 1.0, "Distillation temperature tau of both softmaxes (SimCLRv2: 1).")
flags.DEFINE_float("distill_label_weight", 0.0,
                   "alpha: loss = (1 - alpha) * distillation + alpha * cross-entropy with the training labels (SimCLRv2 "
                   "eq. 3; 0 = labels unused, the paper's distillation on unlabeled images).")
flags.DEFINE_string("model_dir", None, "Where checkpoints, summaries and results go. A run resumes from here.")
flags.DEFINE_string("checkpoint", None,
                    "Checkpoint (prefix or directory) to initialise from when model_dir has none, e.g. the "
                    "pretraining run to fine-tune; with --mode=eval, the checkpoint to evaluate.")
flag_defs.define_source_flags()
flags.DEFINE_string("eval_split", "test", "Split to evaluate on (the reference's default is 'validation').")
flag_defs.define_augment_flags()

flags.DEFINE_integer("resnet_depth", 50, "ResNet depth: 18, 34, 50, 101, 152 or 200.")
flags.DEFINE_float("width_multiplier", 1.0, "Channel multiplier (the paper: 1, 2, 4; tests and CPU demos use < 1).")
flags.DEFINE_bool("cifar_stem", None, "3x3 stride-1 stem without max-pool. Default: on for image_size <= 32 (as the reference).")
flags.DEFINE_float("sk_ratio", 0.0, "Selective-kernel ratio (SimCLRv2: 0.0625); 0 disables.")
flags.DEFINE_float("se_ratio", 0.0, "Squeeze-excitation ratio; 0 disables.")
flags.DEFINE_bool("global_bn", True, "Batch-norm statistics over the global batch (all replicas).")
flags.DEFINE_float("batch_norm_decay", 0.9, "Batch-norm moving-average decay.")
flags.DEFINE_enum("proj_head_mode", "nonlinear", ["none", "linear", "nonlinear"], "Projection head type.")
flags.DEFINE_integer("proj_out_dim", 128, "Projection output dimension.")
flags.DEFINE_integer("num_proj_layers", 3, "Layers of the nonlinear projection head (v1: 2, v2: 3).")
flags.DEFINE_integer("ft_proj_selector", 0, "Projection-head layer fine-tuning starts from (0 = h, -1 = the last, "
                     "as in the reference).")
flags.DEFINE_bool("fused_batch_norm", True,
                  "Batch norm through TensorFlow's fused kernel where it is not cross-replica (one replica, or "
                  "--noglobal_bn): same math as Keras's layer, 1.3x faster training in bfloat16 on CPU.")
flags.DEFINE_bool("zero_init_logits_layer", False, "Zero-initialise the supervised head.")

flags.DEFINE_enum("optimizer", "lars", ["lars", "momentum", "adam"], "Optimizer.")
flags.DEFINE_float("learning_rate", 0.3, "Base learning rate, per 256 images with linear scaling.")
flags.DEFINE_enum("learning_rate_scaling", "linear", ["linear", "sqrt"], "How the learning rate scales with the batch.")
flags.DEFINE_float("warmup_epochs", 10, "Epochs of linear warmup before the cosine decay.")
flags.DEFINE_float("weight_decay", 1e-6, "Weight decay (LARS: coupled; others: L2 in the loss).")
flags.DEFINE_float("momentum", 0.9, "Momentum of LARS and SGD.")

flags.DEFINE_integer("train_batch_size", 512, "Global batch size (all replicas together).")
flags.DEFINE_integer("train_epochs", 100, "Epochs to train.")
flags.DEFINE_integer("train_steps", 0, "Steps to train; overrides train_epochs when > 0.")
flags.DEFINE_float("temperature", 0.1, "NT-Xent temperature.")
flags.DEFINE_bool("hidden_norm", True, "L2-normalise projections before the contrastive loss.")
flags.DEFINE_bool("lineareval_while_pretraining", True, "Train a linear head on stop_gradient(h) while pretraining.")
flags.DEFINE_integer("fine_tune_after_block", -1, "Freeze up to this block when fine-tuning: -1 none, 0 stem, 4 all but heads.")
flags.DEFINE_integer("checkpoint_epochs", 1, "Epochs between checkpoints.")
flags.DEFINE_integer("checkpoint_steps", 0, "Steps between checkpoints; overrides checkpoint_epochs when > 0.")
flags.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints to keep.")
flags.DEFINE_integer("steps_per_loop", 0, "Steps per tf.function call, between progress lines and summaries (0: checkpoint_steps).")
flags.DEFINE_integer("seed", 0, "Seed of data order and augmentation.")
flags.DEFINE_integer("shuffle_buffer", 10_000, "Shuffle buffer, in examples.")
flags.DEFINE_bool("cache_dataset", False, "Keep decoded images in memory (small datasets).")
flags.DEFINE_bool("deterministic", False,
                  "Deterministic TF ops: with the same --seed, a run that is killed and resumed ends with the "
                  "same weights as an uninterrupted one (slower on GPUs).")
flags.DEFINE_bool("skip_nonfinite_steps", False,
                  "Skip a step whose loss or gradients are not finite (no update) instead of stopping; the run "
                  "still stops when a whole loop of steps is non-finite. Skipped steps are counted in the log.")
flags.DEFINE_float("label_fraction", 0.0,
                   "Fine-tune on this fraction of each class's labelled train examples (class-balanced, drawn with "
                   "--seed; ids written to model_dir/subset_ids.json). For ImageNet use the official lists: "
                   "--dataset=imagenet2012_subset/1pct or /10pct. 0 = all labels.")
flags.DEFINE_integer("examples_per_class", 0, "Fine-tune on this many labelled train examples per class (0 = all).")
flags.DEFINE_string("subset_ids", None, "Fine-tune on the example ids of this subset_ids.json (another run's), "
                    "so runs compare on the same labels.")
flags.DEFINE_bool("jit_compile", False,
                  "Compile the training step with XLA. Measured slower on CPU (0.7x float32, 0.95x bfloat16: "
                  "benchmarks/train_throughput.py); try it on GPUs/TPUs (TPUs compile with XLA anyway).")
flags.DEFINE_integer("gradient_cache_chunk_size", 0,
                     "Gradient caching (Gao et al. 2021, arXiv:2101.06983): run each replica's batch in chunks of this "
                     "many images (both views), so --train_batch_size is no longer limited by activation memory; it "
                     "must divide the per-replica batch. NT-Xent still sees the whole global batch and its gradient is "
                     "exact, at the cost of a second forward pass (~1/3 more compute). Batch norm normalises each chunk "
                     "with its own statistics (ghost batches of this many images; with --global_bn, chunk i of every "
                     "replica together) and updates its moving averages once per chunk. 0 = off.")
flags.DEFINE_enum("precision", "auto", ["auto", "float32", "mixed_bfloat16", "mixed_float16"],
                  "Compute precision. auto: mixed_bfloat16 where the devices compute bfloat16 natively (TPU, NVIDIA GPU "
                  "of compute capability >= 8.0, x86 CPU with AVX512_BF16 or AMX-BF16), else float32; the choice and "
                  "its reason are logged and recorded in config.json.")

flags.DEFINE_integer("eval_batch_size", 256, "Global eval batch size.")
flags.DEFINE_integer("eval_steps", 0, "Eval batches; 0 = the whole eval split.")
flags.DEFINE_bool("linear_eval", False, "Also train a linear classifier on the frozen encoder's features (train split) and test it.")
flags.DEFINE_integer("linear_eval_epochs", 100, "Epochs of that linear classifier (Adam on standardised features).")
flags.DEFINE_bool("compare_random_encoder", False, "Also linear-evaluate a randomly initialised encoder of the same architecture.")

flags.DEFINE_integer("knn_every_n_steps", 0,
                     "Every N steps (and at the end), log the kNN accuracy of the encoder: train-split features as "
                     "the bank, eval-split ones as queries (Wu et al. 2018). 0 = off.")
flags.DEFINE_integer("knn_k", 200, "kNN monitor: neighbours.")
flags.DEFINE_float("knn_temperature", 0.1, "kNN monitor: votes weigh exp(cosine / T).")
flags.DEFINE_integer("knn_bank_examples", 10_000, "kNN monitor: first N train examples as the bank (0 = all).")
flags.DEFINE_integer("knn_query_examples", 2_000, "kNN monitor: first N eval examples as queries (0 = all).")

flags.DEFINE_bool("export_hub_module", True,
                  "After training, export the final checkpoint as a SavedModel / TF-Hub module to model_dir/saved_model/<step>.")
flags.DEFINE_integer("keep_hub_module_max", 1, "Exported modules to keep in model_dir/saved_model.")
flags.DEFINE_bool("use_tpu", False, "Train on a Cloud TPU (the reference's default is True).")
flags.DEFINE_string("tpu_name", None, "Cloud TPU name or grpc:// address; empty = the local TPU VM / Colab TPU.")
flags.DEFINE_string("tpu_zone", None, "GCE zone of the Cloud TPU.")
flags.DEFINE_string("gcp_project", None, "GCP project of the Cloud TPU.")
flags.DEFINE_string("master", None, "The reference's TPU address flag: used as --tpu_name when that is unset.")
flags.DEFINE_string("eval_name", None, "Accepted for the reference's commands, which define it but never read it.")
flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into this many replicas (MirroredStrategy), to test distributed runs.")
FLAGS = flags.FLAGS


def config_from_flags(values: flags.FlagValues) -> RunConfig:
    def pick(cls, **renamed):
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: renamed.get(name, getattr(values, name, None)) for name in names
                      if name in renamed or name in values})

    augment = flag_defs.augment_config_from_flags(values)
    cifar_stem = values.cifar_stem if values.cifar_stem is not None else values.image_size <= 32
    # The reference's -1: the head's last layer.
    ft_proj_selector = values.num_proj_layers if values.ft_proj_selector == -1 else values.ft_proj_selector
    return RunConfig(
        model_dir=values.model_dir,
        mode=values.mode,
        checkpoint=values.checkpoint,
        source=flag_defs.source_config_from_flags(values, values.train_split),
        augment=augment,
        model=pick(ModelConfig, cifar_stem=cifar_stem, ft_proj_selector=ft_proj_selector),
        optimizer=pick(OptimizerConfig),
        train=pick(TrainConfig),
        eval=pick(EvalConfig),
        strategy=pick(StrategyConfig, tpu_name=values.tpu_name or values.master),
        export=pick(ExportConfig),
    )


def run(config: RunConfig, flag_values: dict | None = None, printer: Callable[[str], None] | None = None) -> None:
    """Trains and/or evaluates as `config.mode` says, writing everything to config.model_dir.

    Nothing is written to a model_dir that holds a run before the config is known to
    continue it (simclr_tf.run_records); a training run holds model_dir/run.lock.
    `flag_values`: the command line, recorded in flags.json for people; `printer` shows
    progress lines and warnings (default: stdout, flushed).
    """
    printer = printer or functools.partial(print, flush=True)  # Progress shows as it happens, also when piped.
    strategy = build_strategy(config.strategy)
    print(f"strategy: {describe(strategy)}", flush=True)
    config = _with_precision(config, strategy, printer)
    trains = config.mode in ("train", "train_then_eval")
    original = _fine_tunes_an_original_model(config)  # Before anything is written.
    original_teacher = bool(config.train.teacher) and reference_import.is_reference(config.train.teacher)
    with contextlib.ExitStack() as held:
        if is_chief(strategy):
            run_records.recorded_config(config.model_dir)  # A model_dir that is a file: before the lock file.
            if trains:
                lock = held.enter_context(RunLock(config.model_dir))
                if lock.taken_over:
                    print(f"took over {lock.path} from {lock.taken_over}, which is no longer running", flush=True)
            print(f"model_dir: {run_records.prepare(config, flag_values)}", flush=True)
        if original_teacher:
            config = _import_original_teacher(config, strategy, printer)
        _run(_import_original(config, strategy, printer) if original else config, strategy, printer)


def _with_precision(config: RunConfig, strategy: tf.distribute.Strategy, printer) -> RunConfig:
    """The config with "auto" precision resolved for this run's devices, its dtype policy set."""
    choice = resolve_precision(config.train.precision, strategy)
    keras.mixed_precision.set_global_policy(choice.policy)
    printer(f"precision: {choice.policy} ({choice.reason})")
    return dataclasses.replace(
        config, train=dataclasses.replace(config.train, precision=choice.policy, precision_reason=choice.reason))


# Where an original SimCLR model given as --checkpoint is imported (inside each worker's dir).
IMPORTED_CHECKPOINT_DIR = "imported_checkpoint"
IMPORTED_TEACHER_DIR = "imported_teacher"


def _fine_tunes_an_original_model(config: RunConfig) -> bool:
    """Whether --checkpoint is an original google-research/simclr SavedModel or checkpoint
    (as that code's README tells its users to pass); raises if it is another architecture."""
    if config.train.train_mode != "finetune" or not config.checkpoint or not reference_import.is_reference(
            config.checkpoint):
        return False
    found = reference_import.reference_architecture(config.checkpoint, ft_proj_selector=config.model.ft_proj_selector)
    conflicts = {field: (getattr(found.model, field), getattr(config.model, field))
                 for field in run_records.ARCHITECTURE_FIELDS if getattr(found.model, field) != getattr(config.model, field)}
    if conflicts:
        listed = "; ".join(f"{field}: the checkpoint has {old!r}, this run asks for {new!r}"
                           for field, (old, new) in conflicts.items())
        raise run_dir.CheckpointError("checkpoint", config.checkpoint,
                                      f"is another architecture ({listed}); set those flags to the checkpoint's")
    return True


def _import_original(config: RunConfig, strategy: tf.distribute.Strategy, printer) -> RunConfig:
    """The config with --checkpoint replaced by the original model imported as one of our runs (once)."""
    target = os.path.join(worker_dir(strategy, config.model_dir), IMPORTED_CHECKPOINT_DIR)
    if not tf.io.gfile.exists(os.path.join(target, run_dir.CONFIG_FILE)):
        result = reference_import.import_reference(
            config.checkpoint, target, image_size=config.augment.image_size,
            batch_norm_decay=config.model.batch_norm_decay, ft_proj_selector=config.model.ft_proj_selector)
        printer(f"imported the original SimCLR model {config.checkpoint} ({result.architecture.describe()}, "
                f"{result.num_variables} variables) into {target}")
    return dataclasses.replace(config, checkpoint=target)


def _import_original_teacher(config: RunConfig, strategy: tf.distribute.Strategy, printer) -> RunConfig:
    """The config with --teacher replaced by the original model imported as one of our runs (once)."""
    target = os.path.join(worker_dir(strategy, config.model_dir), IMPORTED_TEACHER_DIR)
    if not tf.io.gfile.exists(os.path.join(target, run_dir.CONFIG_FILE)):
        result = reference_import.import_reference(config.train.teacher, target, image_size=config.augment.image_size,
                                                   train_mode="finetune")
        if not result.architecture.num_classes:
            raise run_dir.CheckpointError("teacher", config.train.teacher,
                                          "has no supervised head: distil from a fine-tuned model")
        printer(f"imported the original SimCLR teacher {config.train.teacher} ({result.architecture.describe()}) "
                f"into {target}")
    return dataclasses.replace(config, train=dataclasses.replace(config.train, teacher=target))


def _run(config: RunConfig, strategy: tf.distribute.Strategy, printer) -> None:
    # Same initial weights for a seed, whatever the number of replicas.
    keras.utils.set_random_seed(config.train.seed)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    if config.mode in ("train", "train_then_eval"):
        trainer = Trainer(config, strategy, printer=printer)
        monitor = KNNMonitor(config, strategy, trainer.model) if config.eval.knn_every_n_steps else None
        if trainer.train(monitor)["stopped_by"]:
            return  # Preempted: the checkpoint is saved; evaluation waits for the resumed run.
        if config.export.export_hub_module and is_chief(strategy):
            path = export_checkpoint(config.model_dir, keep=config.export.keep_hub_module_max)
            print(f"exported TF-Hub module {path}", flush=True)
    if config.mode in ("eval", "train_then_eval"):
        result = evaluate(config, strategy, printer=printer)
        print("result: " + json.dumps(result, sort_keys=True), flush=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    flag_defs.quiet_logging(FLAGS)
    try:
        if not FLAGS.model_dir:
            raise flag_defs.FlagError("--model_dir must be set")
        # Warnings name config fields; a user of this tool reads them as its flags.
        run(config_from_flags(FLAGS), our_flag_values(FLAGS), lambda line: print(cli_errors.in_flags(line), flush=True))
    except DataSourceError as error:
        cli_errors.exit_with(error, prefix=f"--dataset={FLAGS.dataset}: ")
    except UserError as error:
        cli_errors.exit_with(error)


def our_flag_values(values: flags.FlagValues) -> dict:
    """This tool's flags and their values (not absl's own logging flags), as flags.json records them."""
    ours = {}
    for module, module_flags in values.flags_by_module_dict().items():
        if not module.startswith(("absl.", "tensorflow.")):
            ours.update({flag.name: flag.value for flag in module_flags})
    return dict(sorted(ours.items()))


if __name__ == "__main__":
    app.run(main)
