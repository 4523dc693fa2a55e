"""A run's records are never damaged: a resume with another architecture is refused before anything
is written, one run holds a model_dir at a time, and an unreadable newest checkpoint is skipped."""

import dataclasses
import json
import os
import signal
import socket
import time

import numpy as np
import pytest
import tensorflow as tf

from cli_helpers import TINY_FLAGS, check_ok, environment, error_line, run_cli, start_cli
from export_helpers import tree
from simclr_tf.augment import AugmentConfig
from simclr_tf.config import ModelConfig, RunConfig, TrainConfig
from simclr_tf.errors import ConfigError
from simclr_tf.run_dir import CONFIG_FILE, CONFIG_HISTORY_FILE, FLAGS_FILE, RunDirError
from simclr_tf import run_lock
from simclr_tf.run_lock import RunLock, RunLockedError
from simclr_tf.run_records import ResumeError, check_resumable, prepare, recorded_config
from simclr_tf.training import checkpoints
from test_preemption import model_weights

RUN = [*TINY_FLAGS, "--noexport_hub_module"]


def records(model_dir) -> dict[str, bytes]:
    """Every file of the run except the lock, which only says who holds it."""
    return {name: data for name, data in tree(str(model_dir)).items() if name != "run.lock"}


# --- the recorded config decides what may resume ---------------------------------------------

def small_config(model_dir, **model) -> RunConfig:
    return RunConfig(model_dir=str(model_dir), model=ModelConfig(resnet_depth=18, cifar_stem=True, **model),
                     augment=AugmentConfig.for_image_size(16), train=TrainConfig(train_steps=10))


def test_weight_defining_differences_are_refused_naming_each_field_with_both_values(tmp_path):
    recorded = small_config(tmp_path)
    requested = small_config(tmp_path, width_multiplier=2.0, num_proj_layers=2)
    with pytest.raises(ResumeError) as raised:
        check_resumable(recorded, requested, str(tmp_path))
    message = str(raised.value)
    assert "width_multiplier: model_dir has 1.0, this run asks for 2.0" in message
    assert "num_proj_layers: model_dir has 3, this run asks for 2" in message
    assert "use a new model_dir" in message


def save_a_checkpoint(model_dir) -> None:
    tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(model_dir), 1).save(checkpoint_number=1)


def test_safe_differences_are_returned_and_the_original_record_is_kept(tmp_path):
    first = small_config(tmp_path)
    prepare(first, {"train_steps": 10})
    save_a_checkpoint(tmp_path)
    original = records(tmp_path)
    more = dataclasses.replace(first, train=TrainConfig(train_steps=20, precision="mixed_bfloat16"), mode="eval")
    said = prepare(more, {"train_steps": 20})
    assert "train.train_steps 10 -> 20" in said and "train.precision 'float32' -> 'mixed_bfloat16'" in said
    after = records(tmp_path)
    assert after[CONFIG_FILE] == original[CONFIG_FILE] and after[FLAGS_FILE] == original[FLAGS_FILE]
    (entry,) = [json.loads(line) for line in after[CONFIG_HISTORY_FILE].decode().splitlines()]
    assert entry["changes"] == {"train.precision": ["float32", "mixed_bfloat16"], "train.train_steps": [10, 20]}
    assert entry["flags"] == {"train_steps": 20} and entry["pid"] == os.getpid()
    assert prepare(first) == "same config as recorded"  # mode and model_dir are not settings.


def test_a_run_that_saved_no_checkpoint_is_started_afresh_with_the_corrected_config(tmp_path):
    prepare(small_config(tmp_path), {"resnet_depth": 18})  # Then it stopped, e.g. at a bad dataset name.
    corrected = small_config(tmp_path, width_multiplier=2.0)
    assert prepare(corrected, {"resnet_depth": 18, "width_multiplier": 2.0}).startswith("new run")
    assert recorded_config(str(tmp_path)).model.width_multiplier == 2.0
    save_a_checkpoint(tmp_path)
    with pytest.raises(ResumeError, match="width_multiplier: model_dir has 2.0, this run asks for 1.0"):
        prepare(small_config(tmp_path))


def test_a_model_dir_that_is_a_file_or_under_one_is_named(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    with pytest.raises(RunDirError, match=f"model_dir {path}: is a file, not a directory"):
        recorded_config(str(path))
    with pytest.raises(RunDirError, match=f"cannot be created: {path} is a file, not a directory"):
        recorded_config(str(path / "run"))


@pytest.mark.parametrize("cifar_stem, smallest", [(True, 8), (False, 32)])
def test_images_smaller_than_the_encoders_stride_are_refused(tmp_path, cifar_stem, smallest):
    def config(size):
        return RunConfig(model_dir=str(tmp_path), model=ModelConfig(cifar_stem=cifar_stem),
                         augment=AugmentConfig(image_size=size, ops=("crop", "flip")))

    config(smallest)
    with pytest.raises(ConfigError, match=f"AugmentConfig.image_size must be >= {smallest} .*, got {smallest - 1}$"):
        config(smallest - 1)


def test_the_cli_refuses_another_architecture_and_leaves_the_run_as_it_was(tmp_path):
    model_dir = tmp_path / "run"
    check_ok(run_cli(*RUN, f"--model_dir={model_dir}", "--train_steps=2", "--checkpoint_steps=2"))
    before = records(model_dir)
    refused = run_cli(*RUN, f"--model_dir={model_dir}", "--train_steps=2", "--resnet_depth=34",
                      "--width_multiplier=0.25")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert error_line(refused) == (
        f"error: --model_dir={model_dir}: holds a run this config cannot continue (resnet_depth: model_dir has 18, "
        f"this run asks for 34; width_multiplier: model_dir has 0.125, this run asks for 0.25); use a new "
        f"model_dir, or leave these settings as the run has them to resume it. Nothing was written")
    assert records(model_dir) == before
    # Still the run it was: it resumes with its own flags (more steps) and exports.
    resumed = check_ok(run_cli(*TINY_FLAGS, f"--model_dir={model_dir}", "--train_steps=4", "--checkpoint_steps=2"))
    assert f"resumed from {model_dir}/ckpt-2" in resumed.stdout
    assert "train.train_steps 2 -> 4" in resumed.stdout and f"exported TF-Hub module {model_dir}/saved_model/4" \
        in resumed.stdout
    assert records(model_dir)[CONFIG_FILE] == before[CONFIG_FILE]


# --- one run per model_dir -------------------------------------------------------------------

def test_a_held_lock_is_refused_naming_its_holder_and_a_released_one_is_free(tmp_path):
    with RunLock(str(tmp_path)) as held:
        assert held.taken_over is None
        with pytest.raises(RunLockedError, match=f"is in use by another run \\(pid {os.getpid()} on host "
                                                 f"{socket.gethostname()}, started 20"):
            RunLock(str(tmp_path)).__enter__()
    with RunLock(str(tmp_path)) as again:
        assert again.taken_over is None  # Released cleanly: nothing to take over.


def test_a_lock_left_by_a_dead_process_is_taken_over_naming_it(tmp_path):
    (tmp_path / "run.lock").write_text(json.dumps({"host": "gone", "pid": 123, "started": "2026-01-01T00:00:00"}))
    with RunLock(str(tmp_path)) as lock:
        assert lock.taken_over == "pid 123 on host gone, started 2026-01-01T00:00:00"


def test_object_store_locks_go_by_heartbeat(tmp_path, monkeypatch):
    # Local files through the object-store code path: TF's ram:// filesystem appends on "w".
    monkeypatch.setattr(run_lock, "uses_heartbeat", lambda path: True)
    path = tmp_path / "run.lock"

    def left(host, pid, age):
        path.write_text(json.dumps({"host": host, "pid": pid, "started": "s", "heartbeat": time.time() - age}))

    left("elsewhere", 1, age=5)  # Fresh heartbeat of a run on another host: alive.
    with pytest.raises(RunLockedError, match="pid 1 on host elsewhere"):
        RunLock(str(tmp_path), stale_after_seconds=60).__enter__()
    left("elsewhere", 1, age=120)  # No heartbeat for two minutes: stale.
    with RunLock(str(tmp_path), stale_after_seconds=60, heartbeat_seconds=0.05) as lock:
        assert lock.taken_over == "pid 1 on host elsewhere, started s"
        first = json.loads(path.read_text())["heartbeat"]
        time.sleep(0.3)
        assert json.loads(path.read_text())["heartbeat"] > first  # It beats.
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on host"):
            RunLock(str(tmp_path)).__enter__()
    assert not path.exists()
    left(socket.gethostname(), 2**22 + 12345, age=0)  # This host, no such process: stale at once.
    with RunLock(str(tmp_path)) as lock:
        assert lock.taken_over.startswith(f"pid {2**22 + 12345} on host {socket.gethostname()}")


def test_a_second_run_is_refused_while_the_first_trains_and_a_killed_runs_lock_is_taken_over(tmp_path):
    model_dir = tmp_path / "run"
    first = start_cli(*RUN, f"--model_dir={model_dir}", "--train_steps=1000", "--checkpoint_steps=1000",
                      env=environment())
    try:
        deadline = time.monotonic() + 240
        while not (model_dir / "train_log.jsonl").exists():
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.1)
        second = run_cli(*RUN, f"--model_dir={model_dir}", "--train_steps=1000")
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert error_line(second).startswith(f"error: --model_dir={model_dir}: is in use by another run "
                                             f"(pid {first.pid} on host {socket.gethostname()}, started ")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    third = check_ok(run_cli(*RUN, f"--model_dir={model_dir}", "--train_steps=1"))
    assert f"took over {model_dir}/run.lock from pid {first.pid} on host" in third.stdout


# --- an unreadable newest checkpoint ---------------------------------------------------------

DETERMINISTIC = [*RUN, "--checkpoint_steps=2", "--deterministic", "--shuffle_buffer=64"]


def test_a_truncated_newest_checkpoint_is_skipped_and_the_run_ends_as_an_uninterrupted_one(tmp_path):
    check_ok(run_cli(*DETERMINISTIC, f"--model_dir={tmp_path}", "--train_steps=6"))
    expected = model_weights(str(tmp_path / "ckpt-6"))
    data = tmp_path / "ckpt-6.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # A disk that filled up.
    resumed = check_ok(run_cli(*DETERMINISTIC, f"--model_dir={tmp_path}", "--train_steps=6"))
    assert f"resumed from {tmp_path}/ckpt-4 (skipped {tmp_path}/ckpt-6: unreadable)" in resumed.stdout
    final = model_weights(str(tmp_path / "ckpt-6"))  # Steps 5 and 6 again, from ckpt-4.
    assert final.keys() == expected.keys()
    assert max(float(np.max(np.abs(final[k] - expected[k]))) for k in expected) <= 1e-6


def test_no_intact_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    variable = tf.Variable(1.0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), str(tmp_path), max_to_keep=3)
    for step in (1, 2):
        manager.save(checkpoint_number=step)
    for step in (1, 2):
        os.remove(tmp_path / f"ckpt-{step}.data-00000-of-00001")
    with pytest.raises(checkpoints.CheckpointError, match=r"no intact checkpoint: .*ckpt-2, .*ckpt-1 cannot be read"):
        checkpoints.restore_or_initialize(manager, init_checkpoint=None, model=None, zero_init_logits_layer=False)
