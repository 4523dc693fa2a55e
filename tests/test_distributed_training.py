"""The same training steps on 1 replica, on 4 mirrored CPU replicas, and on 2 worker processes
(MultiWorkerMirroredStrategy over 127.0.0.1) give the same losses.

Data and augmentation are deterministic (views are seeded by example index, shuffle_buffer=1
keeps the stream in source order) and initial weights come from the seed, so each replica
layout sees the same global batches; only float summation order may differ.
"""

import json
import os
import re
import signal
import socket
import time

import numpy as np
import pytest
import tensorflow as tf

from cli_helpers import TINY_FLAGS, check_ok, environment, run_cli, start_cli, train_log
from simclr_tf.run_dir import read_train_log

STEPS = 3
# Several replicas use cross-replica (Keras) batch norm; the one-replica reference must round the
# same way, so it does not use the fused kernel here (test_fused_kernel_... compares that one).
FLAGS = [*TINY_FLAGS, f"--train_steps={STEPS}", "--checkpoint_steps=3", "--mode=train_then_eval",
         "--nofused_batch_norm"]
COMPARED = ("contrast_loss", "supervised_loss", "total_loss", "contrast_acc")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def results(model_dir):
    with open(os.path.join(model_dir, "result.json")) as f:
        return train_log(model_dir), json.load(f)


@pytest.fixture(scope="module")
def single_replica(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("one"))
    check_ok(run_cli(*FLAGS, f"--model_dir={model_dir}"))
    return results(model_dir)


def assert_same_run(run, expected):
    (log, result), (expected_log, expected_result) = run, expected
    assert [r["step"] for r in log] == [r["step"] for r in expected_log] == list(range(1, STEPS + 1))
    for name in COMPARED:
        np.testing.assert_allclose([r[name] for r in log], [r[name] for r in expected_log], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    # The eval pass (padded, gathered across replicas) sees the same 128 test images.
    assert result["num_eval_examples"] == expected_result["num_eval_examples"] == 128
    assert result["label_top_1_accuracy"] == pytest.approx(expected_result["label_top_1_accuracy"], abs=1 / 128)


def test_fused_kernel_on_one_replica_computes_the_same_run_up_to_float32_rounding(single_replica, tmp_path):
    check_ok(run_cli(*FLAGS[:-1], f"--model_dir={tmp_path}"))
    (log, _), (expected_log, _) = results(str(tmp_path)), single_replica
    # Step 1 is computed from the same weights: the same loss. The kernels round differently, and
    # after one update the runs drift apart by ~3e-4 (measured) - float32 rounding, not a formula.
    for name in COMPARED:
        assert log[0][name] == pytest.approx(expected_log[0][name], rel=1e-5, abs=1e-6), name
        np.testing.assert_allclose([r[name] for r in log], [r[name] for r in expected_log], rtol=2e-3, atol=1e-3,
                                   err_msg=name)


def test_mirrored_over_four_cpu_replicas_matches_one_replica(single_replica, tmp_path):
    result = check_ok(run_cli(*FLAGS, f"--model_dir={tmp_path}", "--cpu_replicas=4"))
    assert "MirroredStrategy with 4 replica(s)" in result.stdout
    assert_same_run(results(str(tmp_path)), single_replica)


def test_two_worker_processes_match_one_replica(single_replica, tmp_path):
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
        workers.append(start_cli(*FLAGS, f"--model_dir={tmp_path}", env=environment(TF_CONFIG=tf_config)))
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=400))
    finally:
        for worker in workers:
            worker.kill()
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr[-4000:]}"
    assert "MultiWorkerMirroredStrategy with 2 replica(s)" in outputs[0][0]
    # Only the chief (worker 0) keeps checkpoints and logs in model_dir.
    assert os.path.exists(os.path.join(tmp_path, f"ckpt-{STEPS}.index"))
    assert_same_run(results(str(tmp_path)), single_replica)


def start_workers(flags, model_dir):
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    return [start_cli(*flags, f"--model_dir={model_dir}", env=environment(TF_CONFIG=json.dumps(
        {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}))) for index in range(2)]


def finish(workers, timeout=400):
    try:
        outputs = [worker.communicate(timeout=timeout) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr[-4000:]}"
    return [stdout for stdout, _ in outputs]


PREEMPTED_STEPS = 20
PREEMPTED = [*TINY_FLAGS, "--verbosity=0", f"--train_steps={PREEMPTED_STEPS}", "--checkpoint_steps=1000", "--nofused_batch_norm",
             "--noexport_hub_module"]


def test_sigterm_to_one_worker_stops_both_at_the_same_step_and_the_restart_continues_the_run(tmp_path):
    reference_dir, model_dir = tmp_path / "uninterrupted", tmp_path / "preempted"
    # Against two uninterrupted workers: over 20 steps at this learning rate, float rounding alone
    # moves the 2-worker losses ~1e-2 away from one replica's (measured), a run and its resumption not.
    finish(start_workers(PREEMPTED, reference_dir))
    expected = train_log(str(reference_dir))
    workers = start_workers(PREEMPTED, model_dir)
    deadline = time.monotonic() + 300
    while len(read_train_log(str(model_dir))) < 3:
        assert all(worker.poll() is None for worker in workers) and time.monotonic() < deadline
        time.sleep(0.1)
    workers[1].send_signal(signal.SIGTERM)  # Not the chief: the one whose stop nobody else would see.
    stdouts = finish(workers)
    stopped = [int(re.search(r"stopped by SIGTERM at step (\d+)/", out).group(1)) for out in stdouts]
    assert stopped[0] == stopped[1] < PREEMPTED_STEPS, stdouts
    step = stopped[0]
    assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"ckpt-{step}")  # The chief's.
    assert tf.train.latest_checkpoint(str(model_dir / ".workers" / "worker_1")).endswith(f"ckpt-{step}")
    resumed = finish(start_workers(PREEMPTED, model_dir))
    assert all("resumed from " in out and f"ckpt-{step}" in out for out in resumed)
    log = read_train_log(str(model_dir))  # A record per step; the resumed run's win where both logged.
    assert [r["step"] for r in log] == [r["step"] for r in expected] == list(range(1, PREEMPTED_STEPS + 1))
    for name in COMPARED:
        np.testing.assert_allclose([r[name] for r in log], [r[name] for r in expected], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
