"""Benchmark: training throughput of google-research/simclr's tf2 code and of ours, side by side.

    PYTHONPATH=. .venv/bin/python benchmarks/versus_original.py --original_dir=/tmp/original_simclr/tf2 \
        [--steps=6] [--output_json=PATH]

--original_dir is the directory holding the original's run.py (tf2/ of a google-research/simclr
checkout); its code stays outside this repository and is run as it is.
Expected runtime on 2 otherwise idle CPU cores with --steps=4: 2.5-4 min (each program's wall
time includes its start-up and compile). Measured: 2 min 20 s on an Intel Xeon with AMX-BF16 (the
original 97 s at 17.4 s/step, ours 43 s at 6.9 s/step); 3 min 51 s on an AMD EPYC with
AVX512-BF16 and no AMX (the original 160 s at ~20 s/step, ours ~70 s at ~11.5 s/step).
Target: ours / original >= 1.8x views/s. The ratio depends on the CPU's bfloat16 hardware (ours
computes in bfloat16 where the CPU has it, the original in float32), so the benchmark prints and
records the CPU, its AVX-512/AMX instruction sets and the oneDNN settings of the environment
(benchmarks/machine.py); compare ratios only between runs on the same machine line.

Both programs run the original README's CIFAR-10 pretraining command (ResNet-18, batch 512,
LARS, 32x32 views, no blur), one after the other in their own subprocesses, for --steps steps:
    original:  python run.py <command> --train_steps=S --checkpoint_steps=1
               (TF_USE_LEGACY_KERAS=1: it is tf.keras code of Keras 2, run with tf-keras)
    ours:      python -m simclr_tf.run <command> --train_steps=S --steps_per_loop=1
               --checkpoint_steps=S --download --export_hub_module=false
Ours gets no precision flag: its default (--precision=auto) is what is measured.
cifar10 cannot be downloaded here, so each runs inside tensorflow_datasets.testing.mock_data
(random images with cifar10's features; the mock makes download_and_prepare a no-op, which both
call). The original reads its split sizes from builder.info.splits, which the mock fills only
from metadata files, so its mock is given a cifar10 dataset_info.json with --mock_examples per
split (ours counts the examples it is served). The original's steps are timed from the absl timestamps of its "Completed: k / n steps"
lines, ours from the elapsed_seconds of model_dir/train_log.jsonl (simclr_tf.training.progress);
either way seconds/step = (t_last - t_first) / (k_last - k_first), where the first point is the
end of step 1, so start-up and the compiling first step are left out. The original's per-step
figure includes what its loop does every step at --checkpoint_steps=1 (a checkpoint save and
the metric summaries); that flag is the only way to get a log line per step out of it.
views/s = 2 x 512 / seconds per step.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from benchmarks import machine as machine_info

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH_SIZE = 512
TARGET_RATIO = 1.8

# The original tf2 README's CIFAR-10 pretraining command (after `python run.py`), less --model_dir.
README_COMMAND = (
    "--train_mode=pretrain", "--train_batch_size=512", "--train_epochs=1000",
    "--learning_rate=1.0", "--weight_decay=1e-4", "--temperature=0.5",
    "--dataset=cifar10", "--image_size=32", "--eval_split=test", "--resnet_depth=18",
    "--use_blur=False", "--color_jitter_strength=0.5", "--use_tpu=False",
)

flags.DEFINE_string("original_dir", None, "Directory holding google-research/simclr's tf2/run.py (required).")
flags.DEFINE_integer("steps", 6, "Training steps per program; the first (compiling) one is not timed, so >= 3.")
flags.DEFINE_integer("mock_examples", 1024, "Examples per split in tfds's mock cifar10 (>= 512 fills a batch "
                     "with distinct images; also sets the warmup: 10 epochs of it).")
flags.DEFINE_integer("program_timeout_s", 1800, "Give up on a program that runs longer than this.")
flags.DEFINE_string("output_json", "", "Also write the figures to this JSON file (atomically).")
FLAGS = flags.FLAGS

# The original imports its modules by bare name (`import data`, `import model`), as when run
# from its own directory.
_ORIGINAL_WRAPPER = """
import os, runpy, sys
original_dir, num_examples, metadata_dir, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
sys.path.insert(0, original_dir)
os.chdir(original_dir)
import tensorflow as tf
import tensorflow_datasets as tfds
# It reads builder.info.splits[...].num_examples, which the mock leaves empty unless it finds
# dataset_info.json metadata (tfds ships none for cifar10): write cifar10's, with the mock's sizes.
builder = tfds.builder("cifar10", data_dir=metadata_dir)
os.makedirs(builder.data_dir, exist_ok=True)
builder.info.set_splits(tfds.core.SplitDict(
    [tfds.core.SplitInfo(name=name, shard_lengths=[num_examples], num_bytes=0) for name in ("train", "test")]))
builder.info.write_to_directory(builder.data_dir)
# Its LARSOptimizer subclasses tf.keras.optimizers.Optimizer and uses that class's Keras-2 API
# (_set_hyper, add_slot); since Keras 2.11 that API lives on tf.keras.optimizers.legacy.Optimizer.
if not hasattr(tf.keras.optimizers.Optimizer, "_set_hyper"):
    tf.keras.optimizers.Optimizer = tf.keras.optimizers.legacy.Optimizer
# Its projection head builds Dense(-1) and sets the real width in build(); Keras 2.4 took the -1,
# tf-keras now rejects a negative width at construction. A placeholder width of 1 does the same.
_dense_init = tf.keras.layers.Dense.__init__
def _dense_init_with_later_units(self, units, *args, **kwargs):
    _dense_init(self, 1 if isinstance(units, int) and units < 0 else units, *args, **kwargs)
tf.keras.layers.Dense.__init__ = _dense_init_with_later_units
sys.argv = ["run.py"] + args
with tfds.testing.mock_data(num_examples=num_examples, data_dir=metadata_dir):
    runpy.run_path("run.py", run_name="__main__")
"""

_OURS_WRAPPER = """
import sys
import tensorflow_datasets as tfds
from absl import app
from simclr_tf import run
num_examples, args = int(sys.argv[1]), sys.argv[2:]
with tfds.testing.mock_data(num_examples=num_examples):
    app.run(run.main, argv=["run"] + args)
"""

_ABSL_PREFIX = re.compile(r"^[IWEF](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6})\s")
_COMPLETED = re.compile(r"Completed: (\d+) / (\d+) steps")


class BenchmarkError(RuntimeError):
    """A program failed or left too few timed steps; the message says which and why."""


# ---------------------------------------------------------------- parsing and timing (pure)

def parse_absl_timestamp(line: str, year: int) -> float | None:
    """Seconds since the epoch (UTC-naive) of an absl log line `I1202 21:30:01.123456 ...`, else None.

    absl leaves the year out of its prefix, so the caller supplies it (month and day are there:
    a run across midnight still times right).
    """
    match = _ABSL_PREFIX.match(line)
    if not match:
        return None
    month, day, hour, minute, second, micro = (int(g) for g in match.groups())
    moment = datetime.datetime(year, month, day, hour, minute, second, micro, tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def original_step_times(log_text: str, year: int) -> list[tuple[int, float]]:
    """(step, time) of each `Completed: k / n steps` line of the original's absl log."""
    points = []
    for line in log_text.splitlines():
        completed = _COMPLETED.search(line)
        stamp = parse_absl_timestamp(line, year) if completed else None
        if stamp is not None:
            points.append((int(completed.group(1)), stamp))
    return points


def ours_step_times(train_log_text: str) -> list[tuple[int, float]]:
    """(step, elapsed_seconds) of each record of our model_dir/train_log.jsonl."""
    points = []
    for line in train_log_text.splitlines():
        if line.strip():
            record = json.loads(line)
            points.append((int(record["step"]), float(record["elapsed_seconds"])))
    return points


def seconds_per_step(points: list[tuple[int, float]]) -> tuple[float, int]:
    """(seconds per step, steps timed) from the first point to the last.

    The first point marks the end of the first, compiling step, so it and everything before it
    are left out.
    """
    points = sorted(points)
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        raise BenchmarkError(f"need step times at two or more steps to time anything, got {points}")
    (first_step, first_time), (last_step, last_time) = points[0], points[-1]
    if last_time <= first_time:
        raise BenchmarkError(f"step times do not increase: step {first_step} at {first_time}, "
                             f"step {last_step} at {last_time}")
    return (last_time - first_time) / (last_step - first_step), last_step - first_step


def views_per_second(step_seconds: float, batch_size: int = BATCH_SIZE) -> float:
    return 2 * batch_size / step_seconds


def format_table(rows: list[dict]) -> str:
    lines = [f"{'program':<10} {'seconds/step':>13} {'views/s':>10} {'timed steps':>12}"]
    for row in rows:
        lines.append(f"{row['program']:<10} {row['seconds_per_step']:>13.3f} {row['views_per_s']:>10.1f} "
                     f"{row['timed_steps']:>12d}")
    return "\n".join(lines)


def ratio_line(ratio: float) -> str:
    return f"ours / original: {ratio:.2f}x (target >= {TARGET_RATIO}x)"


# ---------------------------------------------------------------- running the two programs

def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_program(name: str, command: list[str], env: dict, cwd: str, log_path: str) -> float:
    """Runs one program with stdout and stderr into `log_path`; its wall time, or a BenchmarkError."""
    progress(f"{name}: running ({FLAGS.steps} steps), log {log_path}")
    start = time.monotonic()
    with open(log_path, "w") as log:
        try:
            result = subprocess.run(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=FLAGS.program_timeout_s)
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"{name} ran past --program_timeout_s={FLAGS.program_timeout_s}; log {log_path}")
    wall = time.monotonic() - start
    if result.returncode != 0:
        with open(log_path) as log:
            tail = "".join(log.readlines()[-25:])
        raise BenchmarkError(f"{name} exited with status {result.returncode} after {wall:.0f} s; "
                             f"log {log_path}, last lines:\n{tail}")
    progress(f"{name}: done in {wall:.0f} s")
    return wall


def measure_original(work_dir: str) -> dict:
    model_dir = os.path.join(work_dir, "original_model")
    log_path = os.path.join(work_dir, "original.log")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # Nothing of ours on its path.
    env["TF_USE_LEGACY_KERAS"] = "1"
    args = [*README_COMMAND, f"--model_dir={model_dir}", f"--train_steps={FLAGS.steps}", "--checkpoint_steps=1",
            # Its progress is absl INFO logging; absl shows only warnings on stderr by default.
            "--logtostderr", "--verbosity=0"]
    year = datetime.datetime.now(datetime.timezone.utc).year
    wall = run_program("original", [sys.executable, "-c", _ORIGINAL_WRAPPER, FLAGS.original_dir,
                                    str(FLAGS.mock_examples), os.path.join(work_dir, "tfds_metadata"), *args],
                       env, FLAGS.original_dir, log_path)
    with open(log_path) as log:
        points = original_step_times(log.read(), year)
    return timing("original", points, wall, log_path)


def measure_ours(work_dir: str) -> dict:
    model_dir = os.path.join(work_dir, "ours_model")
    log_path = os.path.join(work_dir, "ours.log")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    args = [*README_COMMAND, f"--model_dir={model_dir}", f"--train_steps={FLAGS.steps}", "--steps_per_loop=1",
            f"--checkpoint_steps={FLAGS.steps}", "--download", "--export_hub_module=false"]
    wall = run_program("ours", [sys.executable, "-c", _OURS_WRAPPER, str(FLAGS.mock_examples), *args],
                       env, REPO, log_path)
    train_log = os.path.join(model_dir, "train_log.jsonl")
    if not os.path.exists(train_log):
        raise BenchmarkError(f"ours wrote no {train_log}; log {log_path}")
    with open(train_log) as f:
        points = ours_step_times(f.read())
    return timing("ours", points, wall, log_path)


def timing(name: str, points: list[tuple[int, float]], wall: float, log_path: str) -> dict:
    try:
        step_seconds, timed = seconds_per_step(points)
    except BenchmarkError as error:
        raise BenchmarkError(f"{name}: {error}; log {log_path}")
    return {"program": name, "seconds_per_step": step_seconds, "views_per_s": views_per_second(step_seconds),
            "timed_steps": timed, "step_times": points, "wall_s": wall}


def main(argv):
    del argv
    if not FLAGS.original_dir:
        sys.exit("versus_original: --original_dir is required: the directory holding google-research/simclr's "
                 "tf2/run.py")
    FLAGS.original_dir = os.path.abspath(FLAGS.original_dir)
    if not os.path.isfile(os.path.join(FLAGS.original_dir, "run.py")):
        sys.exit(f"versus_original: --original_dir={FLAGS.original_dir} holds no run.py (give the tf2/ "
                 f"directory of a google-research/simclr checkout)")
    if FLAGS.steps < 3:
        sys.exit(f"versus_original: --steps={FLAGS.steps}: need >= 3 (step 1 compiles and is not timed)")
    started = time.monotonic()
    # Recorded before the programs run: the load average then says whether the cores were idle.
    machine, env_shown = machine_info.describe(), machine_info.shown_env(os.environ)
    work_dir = tempfile.mkdtemp(prefix="versus_original_")
    try:
        # One after the other: on a shared CPU, either would slow the other down.
        original = measure_original(work_dir)
        ours = measure_ours(work_dir)
    except BenchmarkError as error:
        # The logs named in the message stay for reading.
        sys.exit(f"versus_original: {error}")
    shutil.rmtree(work_dir, ignore_errors=True)
    ratio = ours["views_per_s"] / original["views_per_s"]
    print()
    print(f"README CIFAR-10 command, ResNet-18, batch {BATCH_SIZE}, {FLAGS.steps} steps each (step 1 not timed)")
    print(f"machine: {machine_info.summary(machine, env_shown)}")
    print(format_table([original, ours]))
    print(ratio_line(ratio))
    if FLAGS.output_json:
        record = {
            "command": list(README_COMMAND), "batch_size": BATCH_SIZE, "steps": FLAGS.steps,
            "mock_examples": FLAGS.mock_examples,
            "machine": machine, "env": env_shown,
            "tf_version": package_version("tensorflow"), "tf_keras_version": package_version("tf-keras"),
            "original": original, "ours": ours, "ratio_ours_over_original": ratio, "target_ratio": TARGET_RATIO,
            "meets_target": ratio >= TARGET_RATIO, "total_wall_s": time.monotonic() - started,
        }
        # Imported here: simclr_tf imports TensorFlow, which the parent otherwise never needs.
        from simclr_tf.io_utils import write_json_atomically

        write_json_atomically(FLAGS.output_json, record)
        print(f"wrote {FLAGS.output_json}")


if __name__ == "__main__":
    app.run(main)
