"""Transfer evaluation over a list of tasks, into one results table (JSON and Markdown).

    python -m simclr_tf.evaluation.transfer --model_dir=/tmp/r50 \\
        --tasks=flags/transfer/cifar10.cfg,flags/transfer/dtd.cfg --results_dir=/tmp/r50/transfer
    python -m simclr_tf.evaluation.transfer --module=/tmp/r50/saved_model/500 --image_size=224 \\
        --tasks="flags/transfer/*.cfg" --classifier=lbfgs --results_dir=/tmp/transfer
    python -m simclr_tf.evaluation.transfer --model_dir=/tmp/r50 --mode=finetune --tasks=... --results_dir=...

Each task file holds the task's flags (dataset, splits, image size, protocol settings;
see simclr_tf/evaluation/task_flags.py); --task_flags are applied after each file,
e.g. --task_flags=--max_train_examples=1000,--classifier=lbfgs. A task that fails (a
dataset not prepared offline, say) is recorded with its error and the others still
run; the exit status is 1 if any failed. The table is rewritten after every task.
"""

from __future__ import annotations

import glob
import os
import time

import keras
import tensorflow as tf
from absl import app, flags

from simclr_tf import cli_errors, flag_defs
from simclr_tf.augment import AugmentConfig
from simclr_tf.config import EvalConfig, OptimizerConfig, RunConfig, StrategyConfig, TrainConfig
from simclr_tf.errors import UserError
from simclr_tf.evaluation.checkpoint_eval import evaluate
from simclr_tf.evaluation.features import load_encoder
from simclr_tf.evaluation.protocols import run_task
from simclr_tf.evaluation.task_flags import TRANSFER_MODES, parse_task, task_from_flags
from simclr_tf.flag_defs import FlagError
from simclr_tf.io_utils import write_json_atomically, write_text_atomically
from simclr_tf.run_dir import CONFIG_FILE, RunDir
from simclr_tf.strategy import build_strategy
from simclr_tf.training.trainer import Trainer

flags.DEFINE_string("model_dir", None, "A simclr_tf.run pretraining model_dir (its newest checkpoint, or --checkpoint).")
flags.DEFINE_string("checkpoint", None, "Checkpoint of --model_dir to use.")
flags.DEFINE_string("module", None, "An exported SavedModel / TF-Hub module instead (linear mode only).")
flags.DEFINE_integer("image_size", 0, "Image size for --module (tasks may override).")
flags.DEFINE_list("tasks", None, "Task flagfiles (globs allowed), e.g. flags/transfer/*.cfg.")
flags.DEFINE_list("task_flags", [], "Flags applied to every task after its file, e.g. --max_train_examples=500.")
flags.DEFINE_enum("mode", "linear", TRANSFER_MODES, "linear: frozen features; finetune: the whole network.")
flags.DEFINE_string("results_dir", None, "Where transfer_results.json / .md (and fine-tuning runs) go.")
flags.DEFINE_string("feature_cache_dir", None, "Cache features (linear mode) here.")
FLAGS = flags.FLAGS


def task_files(patterns: list[str]) -> list[str]:
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise FlagError(f"--tasks: {pattern} matches no file")
        files.extend(matches)
    return files


def finetune(model_dir: str, checkpoint: str | None, values, task, run_dir: str, strategy) -> dict:
    """Fine-tunes the pretrained network on the task (momentum SGD, crop+flip views) and evaluates it."""
    if task.multi_label:
        raise FlagError(f"{task.name}: --mode=finetune trains a softmax head on one label per image; a multi-label "
                        f"task (--multi_label) is evaluated in linear mode")
    if task.eval_source.dataset != task.train_source.dataset:
        raise FlagError(f"{task.name}: --mode=finetune evaluates on --eval_split of the same dataset; "
                        f"--eval_dataset is for linear mode")
    pretrained = RunDir.open(model_dir).config
    image_size = task.image_size or pretrained.augment.image_size
    config = RunConfig(
        model_dir=run_dir, mode="train_then_eval", checkpoint=checkpoint or model_dir,
        source=task.train_source, augment=AugmentConfig.for_image_size(image_size),
        model=pretrained.model,
        optimizer=OptimizerConfig(optimizer="momentum", learning_rate=values.finetune_learning_rate,
                                  warmup_epochs=0, weight_decay=values.finetune_weight_decay),
        train=TrainConfig(train_mode="finetune", train_batch_size=values.finetune_batch_size,
                          train_epochs=values.finetune_epochs, train_steps=values.finetune_steps,
                          seed=values.seed, lineareval_while_pretraining=False),
        eval=EvalConfig(eval_split=task.eval_source.split, eval_batch_size=task.batch_size),
    )
    tf.io.gfile.makedirs(run_dir)
    config.write(os.path.join(run_dir, CONFIG_FILE))
    keras.utils.set_random_seed(values.seed)
    Trainer(config, strategy, printer=lambda line: print(line, flush=True)).train()
    result = evaluate(config, strategy, printer=lambda line: print(line, flush=True))
    return {"task": task.name, "mode": "finetune", "run_dir": run_dir,
            "train": f"{task.train_source.dataset}:{task.train_source.split}",
            "eval": f"{task.eval_source.dataset}:{task.eval_source.split}",
            "finetune": {"top1": result["label_top_1_accuracy"], "top5": result["label_top_5_accuracy"],
                         "steps": result["global_step"], "num_eval": result["num_eval_examples"]}}


def markdown_table(results: list[dict], encoder: str, mode: str) -> str:
    lines = [f"# Transfer results ({mode})", "", f"Encoder: {encoder}", "",
             "| task | protocol | top-1 | top-5 | mAP | train | eval | details |", "|---|---|---|---|---|---|---|---|"]
    for result in results:
        if "error" in result:
            lines.append(f"| {result['task']} | - | - | - | - | - | - | error: {result['error']} |")
            continue
        for protocol in ("linear", "knn", "finetune"):
            if protocol not in result:
                continue
            entry = result[protocol]
            details = {"linear": lambda e: f"{e['classifier']}" + (f", l2={e['l2']:.2g}" if "l2" in e else ""),
                       "knn": lambda e: f"k={e['k']}, T={e['temperature']}",
                       "finetune": lambda e: f"{e['steps']} steps"}[protocol](entry)
            scores = (f"- | - | {100 * entry['map']:.2f}" if "map" in entry
                      else f"{100 * entry['top1']:.2f} | {100 * entry['top5']:.2f} | -")
            lines.append(f"| {result['task']} | {protocol} | {scores} "
                         f"| {result.get('train', '')} ({result.get('num_train', '')}) "
                         f"| {result.get('eval', '')} ({result.get('num_eval', entry.get('num_eval', ''))}) "
                         f"| {details} |")
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    flag_defs.quiet_logging(FLAGS)

    try:
        if not FLAGS.tasks:
            raise FlagError("--tasks must list task flagfiles, e.g. --tasks='flags/transfer/*.cfg'")
        if not FLAGS.results_dir:
            raise FlagError("--results_dir must be set")
        if FLAGS.mode == "finetune" and not FLAGS.model_dir:
            raise FlagError("--mode=finetune needs --model_dir (the checkpoint is fine-tuned in place of the "
                            "module); fine-tune a module through hub.KerasLayer instead (README)")
        files = task_files(FLAGS.tasks)
        encoder, run_dataset = (None, None) if FLAGS.mode == "finetune" else load_encoder(
            FLAGS.model_dir, FLAGS.checkpoint, FLAGS.module, FLAGS.image_size)
    except UserError as error:
        cli_errors.exit_with(error)
    strategy = build_strategy(StrategyConfig()) if FLAGS.mode == "finetune" else None
    described = encoder.describe if encoder else f"checkpoint {FLAGS.checkpoint or FLAGS.model_dir} (fine-tuned)"
    results = []
    started = time.monotonic()
    for number, path in enumerate(files, 1):
        print(f"[{number}/{len(files)}] {path} ({time.monotonic() - started:.0f} s so far)", flush=True)
        try:
            values = parse_task(path, FLAGS.task_flags, FLAGS.image_size)
            task = task_from_flags(values, default_dataset=run_dataset)
            if FLAGS.mode == "finetune":
                safe = task.name.replace("/", "_").replace(":", "_")
                result = finetune(FLAGS.model_dir, FLAGS.checkpoint, values, task,
                                  os.path.join(FLAGS.results_dir, f"finetune_{safe}"), strategy)
            else:
                result = run_task(encoder, task, cache_dir=FLAGS.feature_cache_dir,
                                  printer=lambda line: print(line, flush=True))
        except (UserError, tf.errors.OpError) as error:  # The task's data is not there, say: record it, go on.
            message = cli_errors.flag_message(error) if isinstance(error, UserError) else " ".join(str(error).split())
            message = message[:300]
            print(f"error: {path}: {message}", flush=True)
            result = {"task": os.path.basename(path), "flagfile": path, "error": message}
        results.append({"flagfile": path, **result})
        table = {"encoder": described, "mode": FLAGS.mode, "tasks": results}
        write_json_atomically(os.path.join(FLAGS.results_dir, "transfer_results.json"), table)
        write_text_atomically(os.path.join(FLAGS.results_dir, "transfer_results.md"),
                              markdown_table(results, described, FLAGS.mode))
    print(f"results: {os.path.join(FLAGS.results_dir, 'transfer_results.md')} (and .json)")
    failed = [r for r in results if "error" in r]
    if failed:
        # The last line names each failed task's file and reason, as a single failure would.
        reasons = "; ".join(r["error"] if r["error"].startswith(r["flagfile"]) else f"{r['flagfile']}: {r['error']}"
                            for r in failed)
        raise SystemExit(f"error: {len(failed)} of {len(results)} tasks failed: {reasons}"[:2000])


if __name__ == "__main__":
    app.run(main)
