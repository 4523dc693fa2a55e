"""simclr_tf.run_dir: the one reader of a model_dir, including model_dirs older versions wrote."""

import json
import os
import shutil

import numpy as np
import pytest

from cli_helpers import REPO, error_line
from export_helpers import run_module
from simclr_tf.config import ExportConfig, RunConfig
from simclr_tf.run_dir import (
    CheckpointError,
    RunDir,
    RunDirError,
    read_results,
    read_train_log,
    resolve_checkpoint,
    step_of,
)

# A model_dir exactly as version 0.1.0 wrote it (tests/data/README.md): its config.json has no
# `export` section.
LEGACY_MODEL_DIR = os.path.join(REPO, "tests", "data", "model_dir_0_1_0")


@pytest.fixture
def legacy_run(tmp_path):
    """A copy in another place than the one its config.json records (/tmp/legacy)."""
    copy = tmp_path / "legacy"
    shutil.copytree(LEGACY_MODEL_DIR, copy)
    return str(copy)


def test_step_of():
    assert step_of("/runs/x/ckpt-120") == 120
    with pytest.raises(CheckpointError, match="checkpoint /runs/x/model: not named ckpt-<step>"):
        step_of("/runs/x/model")


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path}/nope: no such checkpoint"):
        resolve_checkpoint(str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="directory has no checkpoint"):
        resolve_checkpoint(str(tmp_path))


def test_an_old_model_dir_loads_with_defaults_for_newer_fields(legacy_run):
    with open(os.path.join(legacy_run, "config.json")) as f:
        recorded = json.load(f)
    assert "export" not in recorded and recorded["model_dir"] == "/tmp/legacy"
    run = RunDir.open(legacy_run)
    assert run.config.export == ExportConfig()
    assert run.config.model_dir == legacy_run  # Where it is now, not where it was written.
    assert run.config.augment.ops == tuple(recorded["augment"]["ops"])  # JSON lists are tuples again.
    assert run.config.augment.crop_area_range == tuple(recorded["augment"]["crop_area_range"])
    assert run.config.model.width_multiplier == recorded["model"]["width_multiplier"] == 0.0625
    assert run.latest_checkpoint() == run.checkpoint() == os.path.join(legacy_run, "ckpt-2")
    assert step_of(run.checkpoint()) == 2


def test_what_a_run_writes_reads_back_the_same(tmp_path):
    config = RunConfig(model_dir=str(tmp_path), export=ExportConfig(keep_hub_module_max=3))
    config.write(str(tmp_path / "config.json"))
    assert RunDir.open(str(tmp_path)).config == config


def test_an_unknown_field_is_an_error_that_names_it(tmp_path):
    values = json.loads(RunConfig(model_dir=str(tmp_path)).to_json())
    values["train"]["sharpness_aware_rho"] = 0.05  # A field no version of simclr_tf has.
    (tmp_path / "config.json").write_text(json.dumps(values))
    with pytest.raises(RunDirError, match=f"model_dir {tmp_path}: TrainConfig in config.json has fields this "
                                          f"version does not know: train.sharpness_aware_rho"):
        RunDir.open(str(tmp_path))


@pytest.mark.parametrize("content, message", [(None, "no config.json"), ("{", "config.json is not valid JSON")])
def test_a_directory_that_is_no_run_is_named(tmp_path, content, message):
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    with pytest.raises(RunDirError, match=f"model_dir {tmp_path}: {message}"):
        RunDir.open(str(tmp_path))
    with pytest.raises(RunDirError, match="no such directory"):
        RunDir.open(str(tmp_path / "missing"))


def test_a_run_without_checkpoints_says_so(tmp_path):
    RunConfig(model_dir=str(tmp_path)).write(str(tmp_path / "config.json"))
    run = RunDir.open(str(tmp_path))
    assert run.latest_checkpoint() is None
    with pytest.raises(CheckpointError, match=f"model_dir {tmp_path}: no checkpoint yet"):
        run.checkpoint()


def test_logs_and_results(legacy_run, tmp_path):
    records = read_train_log(legacy_run)
    assert [record["step"] for record in records] == [1, 2]
    assert all(np.isfinite(record["total_loss"]) for record in records)
    (results,) = read_results(legacy_run)  # result_2.json; result.json repeats it and is not read twice.
    assert results["global_step"] == 2 and results["num_eval_examples"] == 64
    assert read_train_log(str(tmp_path)) == [] and read_results(str(tmp_path)) == []


def test_an_old_model_dir_exports_evaluates_and_plots(legacy_run, tmp_path):
    """The tools read a 0.1.0 model_dir as they read today's: export (and verify), evaluation, plots."""
    exported = run_module("tf_hub_export", f"--model_dir={legacy_run}")
    assert exported.returncode == 0, exported.stderr[-3000:]
    module = os.path.join(legacy_run, "saved_model", "2")
    assert exported.stdout.strip().endswith(f"exported {module}")
    verified = run_module("tf_hub_export.verify", module, f"--model_dir={legacy_run}")
    assert verified.returncode == 0, verified.stderr[-3000:]
    assert "max abs difference to" in verified.stdout

    results = str(tmp_path / "knn.json")
    evaluated = run_module("simclr_tf.evaluation", f"--model_dir={legacy_run}", "--protocols=knn", "--knn_k=5",
                           "--max_train_examples=128", "--max_eval_examples=64", "--eval_batch_size=64",
                           f"--results={results}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    with open(results) as f:
        knn = json.load(f)["knn"]
    assert knn["num_bank"] == 128 and knn["num_query"] == 64 and 0.0 <= knn["top1"] <= 1.0

    for command in ("curves", "augmentations"):
        plotted = run_module("simclr_tf.plots", command, f"--model_dir={legacy_run}", "--num_images=2")
        assert plotted.returncode == 0, plotted.stderr[-3000:]
        assert os.path.getsize(os.path.join(legacy_run, "plots", f"{command}.png")) > 1000


def test_a_bad_value_in_config_json_names_the_run_not_a_flag(legacy_run):
    with open(os.path.join(legacy_run, "config.json")) as f:
        values = json.load(f)
    values["export"] = {"export_hub_module": True, "keep_hub_module_max": 0}
    with open(os.path.join(legacy_run, "config.json"), "w") as f:
        json.dump(values, f)
    result = run_module("tf_hub_export", f"--model_dir={legacy_run}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    # The value comes from the run's file, not from a flag: the file is named, the field kept.
    assert error_line(result) == (f"error: --model_dir={legacy_run}: ExportConfig.keep_hub_module_max must be "
                                  f">= 1, got 0")
