"""tf_hub_export: modules that load without simclr_tf, fine-tune in hub.KerasLayer, serve, and are
never visible half-written."""

import dataclasses
import functools
import glob
import json
import os
import pathlib
import subprocess
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from cli_helpers import TINY_FLAGS, check_ok, run_cli
from export_helpers import (EXPECTED_SHAPES, IMAGES, KILLABLE_WRITER, TINY, USER_SCRIPT, kill, run_module, start,
                            tiny_model, tree, write_run)
from simclr_tf.training.builders import build_model
from simclr_tf.errors import ConfigError
from simclr_tf.run_dir import RunDir, RunDirError
from simclr_tf.training.checkpoints import model_from_run
from tf_hub_export import atomic, export
from tf_hub_export.module import ExportError
from tf_hub_export.checks import VerificationError, verify
from tf_hub_export.module import HubModule

HEAD = ("proj_head_input", "proj_head_output")


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@dataclasses.dataclass
class Modules:
    exported: str  # Everything, BN following `training`.
    frozen_headless: str  # Without the projection head, frozen BN.
    user: subprocess.Popen  # USER_SCRIPT on both, started at once: it runs while other tests do.
    directory: pathlib.Path

    @functools.cached_property
    def user_report(self) -> tuple[dict, dict]:
        stdout, stderr = self.user.communicate(timeout=300)
        assert self.user.returncode == 0, stderr[-3000:]
        return json.loads(stdout.strip().splitlines()[-1]), dict(np.load(self.directory / "outputs.npz"))


@pytest.fixture(scope="module")
def modules(model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("modules")
    exported = export(model, str(directory / "hub"), step=7)
    frozen_headless = export(model, str(directory / "frozen"), step=7, include_projection_head=False,
                             freeze_batch_norm=True)
    np.save(directory / "images.npy", IMAGES)
    # A fresh process with TensorFlow, tf_keras and tensorflow_hub but no simclr_tf on its path
    # (python -c puts the working directory on sys.path: not the repo).
    user = start("-c", USER_SCRIPT, exported, frozen_headless, str(directory / "images.npy"),
                 str(directory / "outputs.npz"), cwd=str(directory), PYTHONPATH="")
    yield Modules(exported, frozen_headless, user, directory)
    if user.poll() is None:
        kill(user)


def test_frozen_batch_norm_ignores_training_and_keeps_its_statistics(modules):
    for path, frozen in ((modules.frozen_headless, True), (modules.exported, False)):
        module = tf.saved_model.load(path)
        statistics = [v.numpy() for v in module.variables if "moving_" in v.name]
        inference = module(IMAGES, training=False)["final_avg_pool"].numpy()
        training = module(IMAGES, training=True)["final_avg_pool"].numpy()
        after = [v.numpy() for v in module.variables if "moving_" in v.name]
        moved = any(not np.array_equal(a, b) for a, b in zip(statistics, after))
        if frozen:
            np.testing.assert_array_equal(training, inference)
            assert not moved
        else:
            assert np.max(np.abs(training - inference)) > 1e-2  # Batch statistics differ from the moving ones.
            assert moved


def test_module_without_projection_head_has_neither_its_outputs_nor_its_weights(model, modules):
    module = tf.saved_model.load(modules.frozen_headless)
    outputs = module(IMAGES, training=False)
    assert sorted(outputs) == sorted(set(EXPECTED_SHAPES) - set(HEAD))
    assert sorted(module.signatures["serving_default"](images=tf.constant(IMAGES))) == sorted(outputs)
    head_variables = len(model.projection_head.variables)
    assert head_variables > 0 and len(module.variables) == len(model.variables) - head_variables
    assert not any("projection_head" in v.name for v in module.variables)
    expected = model(IMAGES, training=False)
    for name in outputs:
        np.testing.assert_allclose(outputs[name], expected[name], rtol=0, atol=1e-5, err_msg=name)


def test_projection_head_is_needed_when_the_classifier_reads_one_of_its_layers():
    config = dataclasses.replace(TINY, ft_proj_selector=1)
    model = build_model(config, image_size=16, num_classes=10, train_mode="finetune", num_replicas=1)
    with pytest.raises(ExportError, match="HubModule.include_projection_head=False.*ModelConfig.ft_proj_selector=1"):
        HubModule(model, include_projection_head=False)
    assert "proj_head_output" in HubModule(model)(IMAGES)


def fake_write(content: str):
    def write(directory):
        os.makedirs(directory)
        with open(os.path.join(directory, "saved_model.pb"), "w") as f:
            f.write(content)
    return write


def contents(export_dir):
    """{version: its saved_model.pb}; fails on anything else in export_dir (hidden leftovers too)."""
    return {name: open(os.path.join(export_dir, name, "saved_model.pb")).read() for name in os.listdir(export_dir)}


def test_keeps_the_newest_versions_and_the_one_just_written(tmp_path):
    export_dir = str(tmp_path)
    for step in (1, 2, 3):
        atomic.write_version(export_dir, step, fake_write(f"v{step}"), keep=2)
    assert contents(export_dir) == {"2": "v2", "3": "v3"}
    assert atomic.write_version(export_dir, 3, fake_write("v3 again"), keep=2) == os.path.join(export_dir, "3")
    assert contents(export_dir) == {"2": "v2", "3": "v3 again"}
    atomic.write_version(export_dir, 1, fake_write("old step"), keep=2)  # Older than the rest: kept anyway.
    assert contents(export_dir) == {"1": "old step", "3": "v3 again"}
    atomic.write_version(export_dir, 10, fake_write("v10"), keep=1)
    assert contents(export_dir) == {"10": "v10"}
    with pytest.raises(ConfigError, match="ExportConfig.keep_hub_module_max=0 must be >= 1"):
        atomic.write_version(export_dir, 11, fake_write("v11"), keep=0)


def test_failed_write_leaves_nothing_and_the_previous_version(tmp_path):
    export_dir = str(tmp_path)
    atomic.write_version(export_dir, 1, fake_write("v1"), keep=1)

    def broken(directory):
        fake_write("partial")(directory)
        raise OSError("disk full")

    for step in (1, 2):
        with pytest.raises(OSError, match="disk full"):
            atomic.write_version(export_dir, step, broken, keep=1)
        assert contents(export_dir) == {"1": "v1"}  # Also: no hidden temporary directory left.


def test_killed_writer_leaves_no_partial_module_and_loses_no_previous_one(tmp_path):
    mid_write, mid_swap = str(tmp_path / "mid_write"), str(tmp_path / "mid_swap")
    for export_dir in (mid_write, mid_swap):
        atomic.write_version(export_dir, 1, fake_write("v1"), keep=5)
    # Both at once (each imports TensorFlow): a new step killed while its files are written,
    # and a re-export of step 1 killed between renaming the old one away and the new one in.
    processes = [start("-c", KILLABLE_WRITER, mid_write, "2", "mid_write"),
                 start("-c", KILLABLE_WRITER, mid_swap, "1", "mid_swap")]
    for process in processes:
        line = process.stdout.readline()
        assert line == "KILL\n", process.stderr.read()[-3000:]
        kill(process)
    assert sorted(name[:7] for name in os.listdir(mid_write)) == [".tmp-2-", "1"]  # No 2, a hidden partial.
    assert tree(f"{mid_write}/1") == {"saved_model.pb": b"v1"}
    assert atomic.versions(mid_swap) == []  # The one moment the old step 1 is only in .replaced-1-...
    for export_dir in (mid_write, mid_swap):
        atomic.write_version(export_dir, 3, fake_write("v3"), keep=5)  # Cleans up after the dead writer.
        assert sorted(os.listdir(export_dir)) == ["1", "3"]
        assert contents(export_dir) == {"1": "v1", "3": "v3"}


def test_verify_fails_on_a_different_model_and_on_a_missing_module(model, modules, tmp_path):
    exported = modules.exported
    missing = start("-m", "tf_hub_export.verify", str(tmp_path))  # Runs while the checks below do.
    table = verify(exported, IMAGES, reference=model)
    assert {row.name: row.shape for row in table} == EXPECTED_SHAPES
    assert max(row.max_abs_diff for row in table) <= 1e-5
    with pytest.raises(VerificationError, match=r"differ from the checkpoint's model by up to .* > 1e-05"):
        verify(exported, IMAGES, reference=tiny_model(seed=1))
    with pytest.raises(VerificationError, match="no SavedModel here"):
        verify(str(tmp_path), IMAGES)
    _, stderr = missing.communicate(timeout=300)
    assert missing.returncode == 1
    expected_error = f"error: {tmp_path}: no SavedModel here (expected {tmp_path}/saved_model.pb)"
    assert stderr.strip().splitlines()[-1] == expected_error


def test_model_from_checkpoint_reads_the_head_from_the_checkpoint_and_builds_float32(tmp_path):
    no_head = build_model(TINY, image_size=16, num_classes=None, train_mode="pretrain", num_replicas=1)
    write_run(str(tmp_path), no_head, steps=(3,))
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")  # As after mixed-precision training in run.py.
    try:
        model, path = model_from_run(RunDir.open(str(tmp_path)))
        assert keras.config.dtype_policy().name == "mixed_bfloat16"  # Restored for the caller.
    finally:
        keras.config.set_dtype_policy(policy)
    assert path == f"{tmp_path}/ckpt-3" and model.supervised_head is None
    outputs = model(IMAGES)
    assert "logits_sup" not in outputs and outputs["block_group4"].dtype == "float32"
    np.testing.assert_array_equal(outputs["final_avg_pool"], no_head(IMAGES)["final_avg_pool"])


def test_a_directory_without_config_is_named(tmp_path):
    with pytest.raises(RunDirError, match=f"model_dir {tmp_path}: no config.json"):
        model_from_run(RunDir.open(str(tmp_path)))


def test_module_loads_without_simclr_tf_and_matches_the_model(model, modules):
    report, outputs = modules.user_report
    assert report["imported"] == []
    assert sorted(outputs) == sorted(EXPECTED_SHAPES)
    expected = model(IMAGES, training=False)
    for name, shape in EXPECTED_SHAPES.items():
        assert outputs[name].shape == shape, name
        assert outputs[name].dtype == np.float32, name
        np.testing.assert_allclose(outputs[name], np.asarray(expected[name]), rtol=0, atol=1e-5, err_msg=name)
    assert report["serving_outputs"] == sorted(EXPECTED_SHAPES) and report["serving_max_diff"] <= 1e-6
    assert report["variables"] == len(model.variables)
    assert report["trainable_variables"] == len(model.trainable_variables)


def test_hub_keras_layer_fine_tunes_the_encoder_only_when_trainable(model, modules):
    report, _ = modules.user_report
    for case in ("trainable", "not_trainable", "frozen_bn_trainable"):
        losses = report[case]["losses"]
        assert losses[-1] < losses[0], (case, losses)  # The Dense head learns in every case.
    trainable = report["trainable"]
    assert trainable["trainable_weights"] == len(model.trainable_variables)
    assert trainable["changed_trainable"] > 0 and trainable["changed_non_trainable"] > 0  # BN statistics move.
    frozen = report["not_trainable"]
    assert frozen["trainable_weights"] == 0 and frozen["changed_trainable"] + frozen["changed_non_trainable"] == 0
    frozen_bn = report["frozen_bn_trainable"]
    assert frozen_bn["changed_trainable"] > 0 and frozen_bn["changed_non_trainable"] == 0


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """The CLIs on a real simclr_tf.run pretraining run (ckpt-1..3, with a supervised head).

    `python -m tf_hub_export` exports ckpt-1; then three processes run at once (to save
    time): verify against ckpt-1 (must pass), verify against ckpt-3 (must fail), and an
    export of ckpt-3 that is SIGKILLed when its module is fully written but not yet renamed.
    """
    model_dir, export_dir = str(tmp_path_factory.mktemp("run")), str(tmp_path_factory.mktemp("hub"))
    check_ok(run_cli(*TINY_FLAGS, f"--model_dir={model_dir}", "--train_steps=3", "--checkpoint_steps=1",
                     "--noexport_hub_module"))
    exported = run_module("tf_hub_export", f"--model_dir={model_dir}", f"--checkpoint={model_dir}/ckpt-1",
                          f"--export_dir={export_dir}", "--keep_hub_module_max=1")
    before_kill = tree(f"{export_dir}/1")
    verify_ok = start("-m", "tf_hub_export.verify", f"{export_dir}/1", f"--model_dir={model_dir}")
    verify_other = start("-m", "tf_hub_export.verify", f"{export_dir}/1", f"--model_dir={model_dir}",
                         f"--checkpoint={model_dir}/ckpt-3")
    killed = start("-m", "tf_hub_export", f"--model_dir={model_dir}", f"--export_dir={export_dir}",
                   **{atomic.PAUSE_BEFORE_RENAME_ENV: "60"})
    deadline = time.monotonic() + 120
    while not glob.glob(f"{export_dir}/.tmp-3-*/fingerprint.pb"):  # Written, not renamed: the worst moment.
        assert killed.poll() is None, killed.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    kill(killed)
    after_kill = dict(versions=atomic.versions(export_dir), tree=tree(f"{export_dir}/1"),
                      hidden=[name for name in os.listdir(export_dir) if name.startswith(".")])
    verified = [process.communicate(timeout=300) + (process.returncode,) for process in (verify_ok, verify_other)]
    return dict(model_dir=model_dir, export_dir=export_dir, exported=exported, before_kill=before_kill,
                after_kill=after_kill, verify_ok=verified[0], verify_other=verified[1])


def test_cli_exports_and_verify_agrees_with_the_checkpoint(cli):
    assert cli["exported"].returncode == 0, cli["exported"].stderr[-3000:]
    assert cli["exported"].stdout.strip().splitlines()[-1] == f"exported {cli['export_dir']}/1"
    stdout, stderr, returncode = cli["verify_ok"]
    assert returncode == 0, stderr[-3000:]
    lines = stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:-2]}
    assert lines[0].split() == ["output", "shape", "dtype", "max", "|diff|"]
    assert rows.keys() == EXPECTED_SHAPES.keys()
    assert rows["final_avg_pool"][1:4] == ["(4,", "64)", "float32"]  # verify's batch of 4, 16 px (the run's).
    assert rows["block_group4"][1:6] == ["(4,", "2,", "2,", "64)", "float32"]
    summary = lines[-2]
    assert summary.startswith(f"max abs difference to {cli['model_dir']}/ckpt-1: ")
    assert float(summary.split(": ")[1].split()[0]) <= 1e-5


def test_cli_verify_fails_against_another_checkpoint(cli):
    stdout, stderr, returncode = cli["verify_other"]
    assert returncode == 1 and "max abs difference" not in stdout
    assert stderr.strip().splitlines()[-1].startswith(
        f"error: {cli['export_dir']}/1: outputs differ from the checkpoint's model by up to ")


def test_killed_cli_export_leaves_no_module_under_the_final_name_and_the_previous_intact(cli):
    after = cli["after_kill"]
    assert after["versions"] == [1] and after["tree"] == cli["before_kill"]
    assert [name[:7] for name in after["hidden"]] == [".tmp-3-"]  # The killed export's, left for the next one.
    assert tf.saved_model.load(f"{cli['export_dir']}/1")(IMAGES)["final_avg_pool"].shape == (4, 64)
