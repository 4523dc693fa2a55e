"""Benchmark: SimCLR training-step throughput per precision/XLA variant, as a fraction of the machine's limit.

    PYTHONPATH=. .venv/bin/python benchmarks/train_throughput.py --config=r18_32 \
        [--variants=float32,mixed_bfloat16,float32_xla,mixed_bfloat16_xla] [--output_json=PATH]
    PYTHONPATH=. .venv/bin/python benchmarks/train_throughput.py --config=r50_224 --variants=float32,mixed_bfloat16

Expected runtime on 2 CPU cores: r18_32 with four variants ~8 min; r50_224 with two ~10 min.
Targets (r18_32, batch 128, this 2-core CPU): best variant at least 1.6x float32 non-XLA,
at least 70% of the measured bfloat16 matmul peak, and input pipeline at least 2x the step's rate.

This module measures (workers in subprocesses, orchestration in the parent);
benchmarks/throughput_report.py turns the measured figures into the derived ones, the
printed table, the target lines and the --output_json record.

What is timed is OUR training code: each variant runs in its own subprocess (Keras's global
dtype policy must be set before the model is built, and max RSS is per process), builds a
`Trainer` (simclr_tf.training.trainer) from a RunConfig, and times `Trainer._make_loop()` -
the tf.function that runs strategy.run(make_train_step(...)) in a tf.range loop, default
strategy - fed from one real two-view batch held in memory and repeated (compute only).
"_xla" variants first jit-compile that whole loop (tf.function(..., jit_compile=True) on
its Python function); if XLA cannot compile it, only the replica step is jit-compiled
(make_train_step's result wrapped in tf.function(jit_compile=True), the loop unchanged).
Then a few steps fed by the real pipeline (`Trainer._dataset`) give the end-to-end rate.

Separate subprocesses measure, before and after the variants: float32 and bfloat16
square matmul peaks (best of several tf.linalg.matmul calls, GFLOP/s = 2 n^3 / t) and
the analytic forward FLOPs per view (benchmarks/flops.py: 2 x MACs of conv/matmul,
encoder + projection head; training ~= 3 x forward); and the input pipeline alone
(pretrain_dataset on the offline Fashion-MNIST source at the image size, as the trainer
builds it). Step time is the median over timed calls; "cpu/wall" is the process CPU time
over wall time while timing (~number of cores when the machine is otherwise idle).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import keras
import tensorflow as tf
from absl import app, flags

from benchmarks import machine as machine_info
from benchmarks.flops import build_simclr_model, model_forward_flops
from benchmarks.throughput_report import format_table, json_record
from simclr_tf.augment import AugmentConfig
from simclr_tf.config import ModelConfig, RunConfig, TrainConfig
from simclr_tf.data import SourceConfig, build_source
from simclr_tf.input_pipeline import pretrain_dataset
from simclr_tf.io_utils import write_json_atomically
from simclr_tf.training import step
from simclr_tf.training import trainer as trainer_module

PRESETS = {
    # SimCLR Appendix B.9: CIFAR uses a 3x3 stem without max-pool.
    "r18_32": dict(resnet_depth=18, width_multiplier=1.0, image_size=32, cifar_stem=True, batch_size=128,
                   steps=6, warmup_steps=2, end_to_end_steps=3),
    "r50_224": dict(resnet_depth=50, width_multiplier=1.0, image_size=224, cifar_stem=False, batch_size=32,
                    steps=4, warmup_steps=1, end_to_end_steps=2),
}
VARIANTS = ("float32", "mixed_bfloat16", "float32_xla", "mixed_bfloat16_xla", "mixed_float16", "mixed_float16_xla")

flags.DEFINE_enum("config", "r18_32", list(PRESETS), "Preset; the flags below override its fields.")
flags.DEFINE_integer("resnet_depth", None, "ResNet depth (preset: 18 or 50).")
flags.DEFINE_float("width_multiplier", None, "ResNet width multiplier (preset: 1).")
flags.DEFINE_integer("image_size", None, "View size in pixels (preset: 32 or 224).")
flags.DEFINE_bool("cifar_stem", None, "3x3 stem without max-pool (preset: True for r18_32).")
flags.DEFINE_integer("batch_size", None, "Global batch of images; each gives two views (preset: 128 or 32).")
flags.DEFINE_integer("steps", None, "Timed steps per variant, after warm-up.")
flags.DEFINE_integer("warmup_steps", None, "Untimed steps first (the first call compiles).")
flags.DEFINE_integer("end_to_end_steps", None, "Steps fed by the real input pipeline after the timed ones; 0 = skip.")
flags.DEFINE_float("seconds", 300.0, "Budget for a variant's timed steps: stop early once it is spent (>= 2 steps).")
flags.DEFINE_float("pipeline_seconds", 20.0, "Time spent measuring the input pipeline alone; 0 = skip.")
flags.DEFINE_list("variants", ["float32", "mixed_bfloat16", "float32_xla", "mixed_bfloat16_xla"],
                  f"Variants, each in its own subprocess; float32 is always added as the baseline. Any of {VARIANTS}.")
flags.DEFINE_integer("matmul_size", 4096, "n of the n x n matmuls that measure the peak; 0 = skip.")
flags.DEFINE_integer("matmul_repeats", 6, "Matmuls per dtype; the best time gives the peak.")
flags.DEFINE_integer("intra_op_threads", 0, "tf.config.threading intra-op threads in every subprocess; 0 = TF default.")
flags.DEFINE_integer("inter_op_threads", 0, "tf.config.threading inter-op threads in every subprocess; 0 = TF default.")
flags.DEFINE_list("env", [], "KEY=VALUE environment variables for every subprocess, e.g. ONEDNN_DEFAULT_FPMATH_MODE=BF16.")
flags.DEFINE_string("output_json", "", "Also write every figure to this JSON file (atomically).")
flags.DEFINE_string("worker", "", "Internal: run one measurement (reference, pipeline or variant:NAME) and exit.")
flags.DEFINE_string("worker_output", "", "Internal: where a worker writes its JSON result.")
FLAGS = flags.FLAGS


def settings() -> dict:
    preset = PRESETS[FLAGS.config]
    return {name: preset[name] if FLAGS[name].value is None else FLAGS[name].value for name in preset}


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def resource_usage() -> dict:
    usage = {"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "tf_peak_mb": None}
    try:  # TF 2.21 on CPU: works (it answers zeros before the first tensor allocation).
        info = tf.config.experimental.get_memory_info("CPU:0")
        usage["tf_memory_info_cpu"] = info
        usage["tf_peak_mb"] = info["peak"] / 2**20 if info.get("peak") else None
    except (ValueError, RuntimeError) as error:
        usage["tf_memory_info_cpu"] = f"unavailable: {error}"
    return usage


def configure_threads() -> None:
    if FLAGS.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
    if FLAGS.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)


def run_config(s: dict, precision: str, model_dir: str):
    return RunConfig(
        model_dir=model_dir,
        augment=AugmentConfig.for_image_size(s["image_size"]),
        model=ModelConfig(resnet_depth=s["resnet_depth"], width_multiplier=s["width_multiplier"],
                          cifar_stem=s["cifar_stem"]),
        # Long enough that the warm-up of the learning-rate schedule fits; nothing is saved.
        train=TrainConfig(train_batch_size=s["batch_size"], train_steps=10**6, precision=precision),
    )


# ---------------------------------------------------------------- workers (one per subprocess)

def reference_worker(s: dict, peaks_only: bool) -> dict:
    """Matmul peaks (float32, bfloat16) and, unless `peaks_only`, the analytic forward FLOPs per view."""
    result = {"tf_version": tf.__version__}
    if not peaks_only:
        model = build_simclr_model(s["resnet_depth"], s["width_multiplier"], s["image_size"], s["cifar_stem"])
        result["forward_flops_per_view"] = model_forward_flops(model, s["image_size"])
        progress(f"reference: forward FLOPs per view "
                 f"{result['forward_flops_per_view']['encoder_plus_projection'] / 1e9:.3f} G")
    n = FLAGS.matmul_size
    result["matmul_peak"] = {}
    for dtype in ("float32", "bfloat16") if n else ():
        a = tf.cast(tf.random.normal([n, n]), dtype)
        b = tf.cast(tf.random.normal([n, n]), dtype)
        # A scalar out of the product forces the matmul to finish before the clock stops.
        matmul = tf.function(lambda a, b: tf.cast(tf.linalg.matmul(a, b)[0, 0], tf.float32))
        matmul(a, b).numpy()
        times = []
        for _ in range(FLAGS.matmul_repeats):
            start = time.perf_counter()
            matmul(a, b).numpy()
            times.append(time.perf_counter() - start)
        times.sort()
        result["matmul_peak"][dtype] = {
            "n": n, "best_gflops": 2 * n**3 / times[0] / 1e9, "median_gflops": 2 * n**3 / times[len(times) // 2] / 1e9}
        progress(f"reference: {dtype} {n}x{n} matmul best {result['matmul_peak'][dtype]['best_gflops']:.1f} GFLOP/s, "
                 f"median {result['matmul_peak'][dtype]['median_gflops']:.1f}")
    return result


def pipeline_worker(s: dict) -> dict:
    """Two-view batches/s of pretrain_dataset alone, with the arguments Trainer._dataset uses."""
    config = run_config(s, "float32", "/nonexistent")
    source = build_source(SourceConfig())
    dataset = pretrain_dataset(source, config.augment, s["batch_size"], seed=config.train.seed,
                               shuffle_buffer=config.train.shuffle_buffer, cache=config.train.cache_dataset)
    iterator = iter(dataset)
    for _ in range(3):
        next(iterator)
    batches, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < FLAGS.pipeline_seconds:
        next(iterator)
        batches += 1
    seconds = time.perf_counter() - start
    result = {"source": source.name, "batches_per_s": batches / seconds, "cpu_per_wall": (time.process_time() - cpu) / seconds}
    result["two_view_images_per_s"] = result["batches_per_s"] * s["batch_size"]
    result["views_per_s"] = 2 * result["two_view_images_per_s"]
    progress(f"pipeline: {result['batches_per_s']:.2f} two-view batches/s = {result['views_per_s']:.0f} views/s")
    return result


def jit_step_factory():
    """make_train_step with its replica step jit-compiled (patched into the trainer module)."""

    def make_jit_train_step(*args, **kwargs):
        return tf.function(step.make_train_step(*args, **kwargs), jit_compile=True)

    return make_jit_train_step


def variant_worker(s: dict, variant: str) -> dict:
    """Step time, views/s, cpu/wall, memory and (unless end_to_end_steps is 0) the end-to-end rate of one variant."""
    precision, xla = variant.removesuffix("_xla"), variant.endswith("_xla")
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    strategy = tf.distribute.get_strategy()
    with tempfile.TemporaryDirectory() as model_dir:
        config = run_config(s, precision, model_dir)
        trainer = trainer_module.Trainer(config, strategy, printer=progress)
        views, labels = next(iter(pretrain_dataset(trainer.source, config.augment, s["batch_size"], shuffle_buffer=1000)))
        in_memory = iter(tf.data.Dataset.from_tensors((views, labels)).repeat())
        result = {"variant": variant, "precision": precision, "xla": "off" if not xla else None}

        def call(loop, iterator, num_steps):
            metrics, _ = loop(iterator, tf.constant(num_steps))
            return float(metrics["total_loss"])  # Waits for the steps to finish.

        loops = [("off", trainer._make_loop)]
        if xla:
            loops = [("whole loop", lambda: tf.function(trainer._make_loop().python_function, jit_compile=True)),
                     ("replica step only", None)]
        for mode, make_loop in loops:
            if make_loop is None:  # Patch the step factory the trainer's loop calls, then build the loop.
                original, trainer_module.make_train_step = trainer_module.make_train_step, jit_step_factory()
                try:
                    loop = trainer._make_loop()
                finally:
                    trainer_module.make_train_step = original
            else:
                loop = make_loop()
            start = time.perf_counter()
            try:
                call(loop, in_memory, s["warmup_steps"])
            except (tf.errors.OpError, ValueError, TypeError, NotImplementedError) as error:
                unsupported = sorted(set(re.findall(r"No registered '(\w+)' OpKernel for XLA", str(error))))
                message = (f"XLA cannot compile op(s) {', '.join(unsupported)}" if unsupported
                           else f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}")
                result.setdefault("xla_failures", {})[mode] = message
                progress(f"{variant}: XLA on the {mode} failed: {message}")
                continue
            result["xla"] = mode
            result["compile_and_warmup_s"] = time.perf_counter() - start
            progress(f"{variant}: compiled + {s['warmup_steps']} warm-up step(s) in {result['compile_and_warmup_s']:.1f} s"
                     + (f" (XLA: {mode})" if xla else ""))
            break
        else:
            return {**result, **resource_usage(), "error": "no XLA mode compiled"}

        times, start, cpu = [], time.perf_counter(), time.process_time()
        while len(times) < s["steps"] and (len(times) < 2 or time.perf_counter() - start < FLAGS.seconds):
            t = time.perf_counter()
            loss = call(loop, in_memory, 1)
            times.append(time.perf_counter() - t)
            progress(f"{variant}: step {len(times)}/{s['steps']} {times[-1]:.2f} s (loss {loss:.3f})")
        wall = time.perf_counter() - start
        result.update(step_times_s=times, cpu_per_wall=(time.process_time() - cpu) / wall)
        result["step_time_s"] = sorted(times)[len(times) // 2]
        result["views_per_s"] = 2 * s["batch_size"] / result["step_time_s"]
        result["views_per_s_mean"] = 2 * s["batch_size"] * len(times) / sum(times)

        if s["end_to_end_steps"]:
            real = iter(trainer._dataset(0))
            call(loop, real, 1)  # Retraces for the distributed iterator and fills the prefetch buffer.
            start = time.perf_counter()
            call(loop, real, s["end_to_end_steps"])
            step_time = (time.perf_counter() - start) / s["end_to_end_steps"]
            result["end_to_end_views_per_s"] = 2 * s["batch_size"] / step_time
            progress(f"{variant}: fed by the real input pipeline {result['end_to_end_views_per_s']:.1f} views/s")
    return {**result, **resource_usage()}


# ---------------------------------------------------------------- orchestration (parent process)

def run_worker(worker: str, argv: list[str], env: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        output = os.path.join(tmp, "result.json")
        args = [a for a in argv[1:] if not a.startswith(("--output_json", "--worker"))]
        command = [sys.executable, os.path.abspath(__file__), *args, f"--worker={worker}", f"--worker_output={output}"]
        started = time.perf_counter()
        process = subprocess.run(command, env=env, check=False)
        if process.returncode or not os.path.exists(output):
            return {"error": f"worker {worker} exited with code {process.returncode}"}
        with open(output) as f:
            result = json.load(f)
    result["wall_s"] = time.perf_counter() - started
    return result


def main(argv):
    s = settings()
    unknown = [v for v in FLAGS.variants if v not in VARIANTS]
    if unknown:
        raise app.UsageError(f"--variants: unknown {unknown}; choose from {VARIANTS}")
    if FLAGS.worker:
        configure_threads()
        kind, _, variant = FLAGS.worker.partition(":")
        workers = {"reference": lambda: reference_worker(s, variant == "peaks"), "pipeline": lambda: pipeline_worker(s),
                   "variant": lambda: variant_worker(s, variant)}
        result = workers[kind]()
        with open(FLAGS.worker_output, "w") as f:
            json.dump(result, f)
        return

    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                    env.get("PYTHONPATH")) if p)
    extra = dict(item.split("=", 1) for item in FLAGS.env)
    env.update(extra)
    shown = machine_info.shown_env(env) | extra
    report = {"settings": s, "machine": machine_info.describe(), "env": shown, "flags": {
        k: FLAGS[k].value for k in ("config", "variants", "seconds", "pipeline_seconds", "matmul_size",
                                    "intra_op_threads", "inter_op_threads")}}
    progress(f"{report['machine']['cpu']}, {report['machine']['cores']} cores, settings {s}, env {shown or 'defaults'}")
    variants = ["float32"] + [v for v in FLAGS.variants if v != "float32"]
    progress("reference (FLOPs, matmul peaks) ...")
    report["reference"] = run_worker("reference", sys.argv, env)
    report["matmul_runs"] = [report["reference"]]
    if FLAGS.pipeline_seconds:
        progress("input pipeline alone ...")
        report["pipeline"] = run_worker("pipeline", sys.argv, env)
    report["variants"] = []
    for variant in variants:
        progress(f"variant {variant} ...")
        report["variants"].append({"variant": variant, **run_worker(f"variant:{variant}", sys.argv, env)})
    if FLAGS.matmul_size:
        progress("matmul peaks again (the machine may have been busier or quieter) ...")
        report["matmul_runs"].append(run_worker("reference:peaks", sys.argv, env))
    report["load_average_at_end"] = os.getloadavg()
    record = json_record(report)
    print(format_table(record))
    if FLAGS.output_json:
        write_json_atomically(FLAGS.output_json, record)
        progress(f"wrote {FLAGS.output_json}")


if __name__ == "__main__":
    app.run(main)
