"""Benchmark: memory and speed of gradient caching, and what a large batch buys on our hardware.

    PYTHONPATH=. .venv/bin/python benchmarks/gradient_cache.py [--runs=128:0,256:0,1024:0,4096:0,4096:256,4096:128] \
        [--output_json=PATH]
    PYTHONPATH=. .venv/bin/python benchmarks/gradient_cache.py --quality [--quality_epochs=2]

Speed and memory (default): ResNet-18, CIFAR stem, 32 px, precision auto, the SimCLR training step
of `Trainer._make_loop()` fed one real two-view batch held in memory. Each run GLOBAL:CHUNK
(CHUNK 0 = the plain step) is its own subprocess, so that max RSS and TensorFlow's allocator
peak (tf.config.experimental.get_memory_info) are that run's. A plain run predicted (from the
largest plain run before it, memory linear in the batch) not to fit in 80% of the memory
available is skipped and said so. Prints images/s and peak memory, then the targets: at the
largest batch, the cached run's peak within 1.3x of the plain run at the chunk's batch, and its
images/s at least 0.6x of that run's. ~25 min on 2 cores with the default runs.

Quality (--quality): Fashion-MNIST from Debian's offline copy, the quickstart's settings, batch
256 with the plain step vs batch 2048 with chunks of 256, the same number of epochs, each
followed by linear evaluation and a kNN score of the frozen encoder: SimCLR's Figure 9 question
(does a larger batch help at a fixed number of epochs?) on this machine. Writes both results.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import keras
import tensorflow as tf
from absl import app, flags

from simclr_tf.augment import AugmentConfig
from simclr_tf.config import ModelConfig, RunConfig, TrainConfig
from simclr_tf.input_pipeline import pretrain_dataset
from simclr_tf.io_utils import write_json_atomically
from simclr_tf.precision import resolve_precision
from simclr_tf.training.trainer import Trainer

flags.DEFINE_list("runs", ["128:0", "256:0", "1024:0", "4096:0", "4096:256", "4096:128"],
                  "GLOBAL_BATCH:CHUNK pairs (images; CHUNK 0 = plain step), each in its own subprocess.")
flags.DEFINE_integer("steps", 2, "Timed steps per run, after one untimed step (which traces and compiles).")
flags.DEFINE_integer("image_size", 32, "View size in pixels.")
flags.DEFINE_float("width_multiplier", 1.0, "ResNet-18 width multiplier.")
flags.DEFINE_string("precision", "auto", "Precision of every run (auto: bfloat16 where the CPU computes it).")
flags.DEFINE_bool("quality", False, "Run the same-epochs quality comparison instead of speed and memory.")
flags.DEFINE_integer("quality_epochs", 2, "Quality comparison: pretraining epochs of both runs.")
flags.DEFINE_integer("quality_batch", 2048, "Quality comparison: the large batch (with gradient caching).")
flags.DEFINE_integer("quality_chunk", 256, "Quality comparison: the large run's chunk (and the small run's batch).")
flags.DEFINE_string("quality_dir", "runs/gradient_cache_quality", "Quality comparison: where its two runs go.")
flags.DEFINE_list("quality_large_flags", [], "Quality comparison: more flags for the large-batch run, e.g. "
                  "--learning_rate_scaling=sqrt,--learning_rate=0.0625 (the same learning rate at 256).")
flags.DEFINE_bool("quality_plain", True, "Quality comparison: also run the plain small-batch run.")
flags.DEFINE_string("output_json", "", "Also write every figure to this JSON file (atomically).")
flags.DEFINE_string("worker", "", "Internal: GLOBAL:CHUNK of the one run this subprocess measures.")
flags.DEFINE_string("worker_output", "", "Internal: where a worker writes its JSON result.")
FLAGS = flags.FLAGS

TARGET_MEMORY_RATIO = 1.3
TARGET_SPEED_RATIO = 0.6


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_run(text: str) -> tuple[int, int]:
    try:
        batch, chunk = (int(part) for part in text.split(":"))
    except ValueError:
        raise app.UsageError(f"--runs: {text!r} is not GLOBAL_BATCH:CHUNK (e.g. 4096:256)") from None
    if batch < 1 or chunk < 0 or (chunk and batch % chunk):
        raise app.UsageError(f"--runs: {text!r}: the chunk must divide the batch")
    return batch, chunk


def worker(batch: int, chunk: int) -> dict:
    strategy = tf.distribute.get_strategy()
    precision = resolve_precision(FLAGS.precision, strategy)
    keras.mixed_precision.set_global_policy(precision.policy)
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as model_dir:
        config = RunConfig(
            model_dir=model_dir,
            augment=AugmentConfig.for_image_size(FLAGS.image_size),
            model=ModelConfig(resnet_depth=18, width_multiplier=FLAGS.width_multiplier, cifar_stem=True),
            train=TrainConfig(train_batch_size=batch, train_steps=10**6, precision=precision.policy,
                              gradient_cache_chunk_size=chunk),
        )
        trainer = Trainer(config, strategy, printer=progress)
        views, labels = next(iter(pretrain_dataset(trainer.source, config.augment, batch, shuffle_buffer=1000)))
        in_memory = iter(tf.data.Dataset.from_tensors((views, labels)).repeat())
        loop = trainer._make_loop()

        def call():
            metrics, _ = loop(in_memory, tf.constant(1))
            return float(metrics["total_loss"])  # Waits for the step to finish.

        start = time.perf_counter()
        call()
        first = time.perf_counter() - start
        progress(f"{batch}:{chunk} traced + first step in {first:.1f} s")
        times = []
        for _ in range(FLAGS.steps):
            t = time.perf_counter()
            loss = call()
            times.append(time.perf_counter() - t)
            progress(f"{batch}:{chunk} step {len(times)}/{FLAGS.steps} {times[-1]:.2f} s (loss {loss:.3f})")
    step_time = sorted(times)[len(times) // 2]
    info = tf.config.experimental.get_memory_info("CPU:0")
    return {"global_batch": batch, "chunk": chunk, "precision": precision.policy, "first_step_s": first,
            "step_times_s": times, "step_time_s": step_time, "images_per_s": batch / step_time,
            "tf_peak_mb": info["peak"] / 2**20, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_worker(run: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        output = os.path.join(tmp, "result.json")
        command = [sys.executable, os.path.abspath(__file__), f"--worker={run}", f"--worker_output={output}",
                   f"--steps={FLAGS.steps}", f"--image_size={FLAGS.image_size}",
                   f"--width_multiplier={FLAGS.width_multiplier}", f"--precision={FLAGS.precision}"]
        process = subprocess.run(command, check=False)
        if process.returncode or not os.path.exists(output):
            return {"error": f"exited with code {process.returncode}"}
        with open(output) as f:
            return json.load(f)


def available_mb() -> float:
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["MemAvailable"].split()[0]) / 1024


def speed_and_memory() -> dict:
    runs = [parse_run(text) for text in FLAGS.runs]
    results = {}
    for batch, chunk in runs:
        key = f"{batch}:{chunk}"
        plain = [r for r in results.values() if "error" not in r and "skipped" not in r and r["chunk"] == 0]
        if chunk == 0 and plain:
            largest = max(plain, key=lambda r: r["global_batch"])
            predicted = largest["max_rss_mb"] * batch / largest["global_batch"]
            if predicted > 0.8 * available_mb():
                results[key] = {"global_batch": batch, "chunk": 0,
                                "skipped": f"predicted max RSS {predicted / 1024:.1f} GB (linear from batch "
                                           f"{largest['global_batch']}) > 80% of the {available_mb() / 1024:.1f} GB "
                                           f"available"}
                progress(f"{key}: skipped, {results[key]['skipped']}")
                continue
        progress(f"{key}: measuring")
        results[key] = run_worker(key)
    print("\n| global batch | chunk | images/s | step (s) | TF allocator peak | max RSS |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results.values():
        if "skipped" in r or "error" in r:
            print(f"| {r.get('global_batch', '?')} | {r.get('chunk', '?') or 'plain'} | - | - | "
                  f"{r.get('skipped') or r.get('error')} | |")
            continue
        print(f"| {r['global_batch']} | {r['chunk'] or 'plain'} | {r['images_per_s']:.1f} | {r['step_time_s']:.2f} | "
              f"{r['tf_peak_mb'] / 1024:.2f} GB | {r['max_rss_mb'] / 1024:.2f} GB |")
    targets = []
    cached = [r for r in results.values() if r.get("chunk") and "images_per_s" in r]
    for r in sorted(cached, key=lambda r: (-r["global_batch"], -r["chunk"])):
        base = results.get(f"{r['chunk']}:0")
        if not base or "images_per_s" not in base:
            continue
        memory = r["tf_peak_mb"] / base["tf_peak_mb"]
        rss = r["max_rss_mb"] / base["max_rss_mb"]
        speed = r["images_per_s"] / base["images_per_s"]
        targets.append({"run": f"{r['global_batch']}:{r['chunk']}", "versus": f"{r['chunk']}:0",
                        "tf_peak_ratio": memory, "max_rss_ratio": rss, "speed_ratio": speed,
                        "memory_target_met": memory <= TARGET_MEMORY_RATIO, "speed_target_met": speed >= TARGET_SPEED_RATIO})
        print(f"batch {r['global_batch']} in chunks of {r['chunk']} vs plain batch {r['chunk']}: TF peak {memory:.2f}x "
              f"(target <= {TARGET_MEMORY_RATIO}x: {'met' if memory <= TARGET_MEMORY_RATIO else 'NOT met'}), "
              f"max RSS {rss:.2f}x, images/s {speed:.2f}x "
              f"(target >= {TARGET_SPEED_RATIO}x: {'met' if speed >= TARGET_SPEED_RATIO else 'NOT met'})")
    return {"runs": results, "targets": targets}


def quality() -> dict:
    """Two pretraining runs through the CLI (as a user runs them), then their result.json."""
    common = ["--flagfile=flags/quickstart_fashion_mnist.cfg", f"--train_epochs={FLAGS.quality_epochs}",
              "--compare_random_encoder=false", "--export_hub_module=false"]
    large = f"batch {FLAGS.quality_batch}, chunks of {FLAGS.quality_chunk}"
    runs = {
        f"batch {FLAGS.quality_chunk}, plain step": [f"--train_batch_size={FLAGS.quality_chunk}"],
        large + "".join(f", {flag}" for flag in FLAGS.quality_large_flags): [
            f"--train_batch_size={FLAGS.quality_batch}", f"--gradient_cache_chunk_size={FLAGS.quality_chunk}",
            *FLAGS.quality_large_flags],
    }
    if not FLAGS.quality_plain:
        runs.pop(f"batch {FLAGS.quality_chunk}, plain step")
    results = {}
    for name, extra in runs.items():
        model_dir = os.path.join(FLAGS.quality_dir, "".join(c if c.isalnum() else "_" for c in name))
        progress(f"quality: {name} -> {model_dir}")
        start = time.perf_counter()
        process = subprocess.run([sys.executable, "-m", "simclr_tf.run", *common, *extra, f"--model_dir={model_dir}",
                                  "--knn_every_n_steps=1000000"], check=False)
        if process.returncode:
            results[name] = {"error": f"exited with code {process.returncode}"}
            continue
        with open(os.path.join(model_dir, "result.json")) as f:
            result = json.load(f)
        with open(os.path.join(model_dir, "train_log.jsonl")) as f:
            last = [json.loads(line) for line in f if line.strip()][-1]
        results[name] = {"seconds": time.perf_counter() - start, "model_dir": model_dir,
                         "linear_eval_top_1": result["linear_eval"]["top1"],
                         "knn_top_1": last.get("knn_top1"), "steps": last["step"],
                         "contrast_acc": last.get("contrast_acc")}
        progress(f"quality: {name}: {results[name]}")
    print(f"\n| run ({FLAGS.quality_epochs} epochs) | steps | linear eval top-1 | kNN top-1 | minutes |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | {r['error']} | | | |")
            continue
        print(f"| {name} | {r['steps']} | {r['linear_eval_top_1']} | {r['knn_top_1']} | {r['seconds'] / 60:.1f} |")
    return {"quality": results}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.worker:
        write_json_atomically(FLAGS.worker_output, worker(*parse_run(FLAGS.worker)))
        return
    record = quality() if FLAGS.quality else speed_and_memory()
    if FLAGS.output_json:
        write_json_atomically(FLAGS.output_json, record)


if __name__ == "__main__":
    app.run(main)
