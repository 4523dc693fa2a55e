"""Running the CLI in subprocesses, as users do, with tiny models and few steps."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ResNet-18 at 1/8 width on 16 px images: a few steps take seconds on 2 cores. float32, not
# the default "auto": tests compare runs with each other and with NumPy at float32 tolerances.
TINY_FLAGS = [
    "--precision=float32",
    "--resnet_depth=18", "--width_multiplier=0.125", "--image_size=16",
    "--train_batch_size=16", "--warmup_epochs=0", "--learning_rate=1.0", "--temperature=0.5",
    "--checkpoint_steps=3", "--steps_per_loop=1", "--eval_batch_size=64", "--eval_steps=2",
    "--shuffle_buffer=1", "--num_proj_layers=2",
]


def environment(**extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    if os.environ.get("SIMCLR_TEST_DEVICE", "CPU").upper() == "GPU":
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"  # Several test processes share the GPU.
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def run_cli(*flags: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "simclr_tf.run", *flags], cwd=REPO, env=env or environment(),
        capture_output=True, text=True, timeout=timeout,
    )


def start_cli(*flags: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "simclr_tf.run", *flags], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def check_ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    return result


def train_log(model_dir: str) -> list[dict]:
    with open(os.path.join(model_dir, "train_log.jsonl")) as f:
        return [json.loads(line) for line in f]


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""
