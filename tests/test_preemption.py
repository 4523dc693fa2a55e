"""Killed runs lose nothing: SIGTERM saves a checkpoint at the current step and exits cleanly;
SIGKILL at random moments (also while a checkpoint is being written) resumes from the newest
complete checkpoint, and with --deterministic ends with the uninterrupted run's weights;
a non-finite loss stops the run without touching the last good checkpoint."""

import glob
import hashlib
import os
import random
import signal
import time

import numpy as np
import tensorflow as tf

from cli_helpers import TINY_FLAGS, check_ok, environment, error_line, run_cli, start_cli, train_log

STEPS = 12
DETERMINISTIC = [*TINY_FLAGS, f"--train_steps={STEPS}", "--checkpoint_steps=3", "--deterministic",
                 "--shuffle_buffer=64"]


def logged_steps(model_dir):
    try:
        return [r["step"] for r in train_log(model_dir)]
    except (FileNotFoundError, ValueError):  # Not written yet, or a line half-written.
        return []


def wait_until(condition, process, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.02)
    raise TimeoutError("condition not reached")


def model_weights(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(checkpoint) if name.startswith("model/")}


def test_sigterm_saves_a_checkpoint_at_the_current_step_and_exits_cleanly(tmp_path):
    model_dir = str(tmp_path)
    process = start_cli(*TINY_FLAGS, f"--model_dir={model_dir}", "--train_steps=500", "--checkpoint_steps=1000",
                        env=environment())
    assert wait_until(lambda: len(logged_steps(model_dir)) >= 3, process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    stopped_at = logged_steps(model_dir)[-1]
    assert f"stopped by SIGTERM at step {stopped_at}/500" in stdout
    assert os.path.exists(os.path.join(model_dir, f"ckpt-{stopped_at}.index"))
    assert tf.train.latest_checkpoint(model_dir).endswith(f"ckpt-{stopped_at}")


def test_sigkill_at_random_points_resumes_and_matches_an_uninterrupted_run(tmp_path):
    reference_dir = str(tmp_path / "uninterrupted")
    check_ok(run_cli(*DETERMINISTIC, f"--model_dir={reference_dir}"))
    expected = model_weights(os.path.join(reference_dir, f"ckpt-{STEPS}"))

    model_dir = str(tmp_path / "killed")
    rng = random.Random(0)
    kill_points = [
        ("after step", 2),
        ("while writing a checkpoint", 6),  # Killed as soon as ckpt-6's temporary files appear.
        ("after step", rng.randint(7, STEPS - 1)),
    ]
    kills = 0
    for how, step in kill_points:
        process = start_cli(*DETERMINISTIC, f"--model_dir={model_dir}", env=environment())
        if how == "after step":
            reached = wait_until(lambda: any(s >= step for s in logged_steps(model_dir)), process)
        else:
            reached = wait_until(lambda: glob.glob(os.path.join(model_dir, f"ckpt-{step}*")), process)
        if reached:
            process.kill()
            kills += 1
        process.communicate(timeout=60)
        latest = tf.train.latest_checkpoint(model_dir)
        if latest:  # The newest checkpoint the index names is always complete and readable.
            assert model_weights(latest)
    assert kills == 3
    resumed = check_ok(run_cli(*DETERMINISTIC, f"--model_dir={model_dir}"))
    assert "resumed from" in resumed.stdout
    final = model_weights(os.path.join(model_dir, f"ckpt-{STEPS}"))
    assert final.keys() == expected.keys()
    worst = max(float(np.max(np.abs(final[name] - expected[name]))) for name in expected)
    print(f"{kills} kills, all resumed; max abs weight difference to the uninterrupted run: {worst}")
    assert worst <= 1e-6, f"max abs weight difference {worst}"


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    model_dir = str(tmp_path)
    flags = [*TINY_FLAGS, f"--model_dir={model_dir}", "--checkpoint_steps=2", "--optimizer=momentum"]
    check_ok(run_cli(*flags, "--train_steps=2"))
    good = os.path.join(model_dir, "ckpt-2")
    digest = {path: hashlib.sha256(open(path, "rb").read()).hexdigest() for path in glob.glob(good + ".*")}
    # A learning rate of 1e30 sends the weights to infinity within a step or two.
    result = run_cli(*flags, "--train_steps=8", "--learning_rate=1e30")
    assert result.returncode != 0
    line = error_line(result)
    assert "the loss became non-finite at step" in line and f"{good} is intact" in line, result.stderr[-2000:]
    assert tf.train.latest_checkpoint(model_dir) == good
    assert {path: hashlib.sha256(open(path, "rb").read()).hexdigest() for path in glob.glob(good + ".*")} == digest
