"""The evaluation suite end to end, as users run it: kNN monitor during pretraining, linear
evaluation and kNN from a checkpoint and from its exported module, fine-tuning on a
class-balanced label subset, and the transfer command's results table."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cli_helpers import REPO, TINY_FLAGS, check_ok, environment, error_line, run_cli, train_log

SMALL_EVAL = ["--max_train_examples=384", "--max_eval_examples=192", "--eval_batch_size=64", "--linear_epochs=10",
              "--knn_k=20"]


def run_module(module: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *flags], cwd=REPO, env=environment(),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    model_dir = str(tmp_path_factory.mktemp("pretrained"))
    check_ok(run_cli(*TINY_FLAGS, f"--model_dir={model_dir}", "--train_steps=6", "--knn_every_n_steps=3",
                     "--knn_bank_examples=256", "--knn_query_examples=128", "--knn_k=20"))
    return model_dir


def test_knn_monitor_is_logged_at_its_steps(pretrained):
    records = {record["step"]: record for record in train_log(pretrained)}
    assert [step for step, record in sorted(records.items()) if "knn_top1" in record] == [3, 6]
    for step in (3, 6):
        assert 0.0 <= records[step]["knn_top1"] <= records[step]["knn_top5"] <= 1.0
    assert "knn_top1" not in records[4]


def test_checkpoint_and_exported_module_give_the_same_evaluation(pretrained, tmp_path):
    module = os.path.join(pretrained, "saved_model", "6")
    common = ["--protocols=linear,knn", *SMALL_EVAL]
    from_checkpoint = check_ok(run_module("simclr_tf.evaluation", f"--model_dir={pretrained}", *common,
                                          f"--feature_cache_dir={tmp_path / 'cache'}",
                                          f"--results={tmp_path / 'ckpt.json'}"))
    check_ok(run_module("simclr_tf.evaluation", f"--module={module}", "--image_size=16",
                        "--dataset=fashion_mnist_offline", *common, f"--results={tmp_path / 'module.json'}"))
    assert "cached in" in from_checkpoint.stdout
    results = [json.loads((tmp_path / name).read_text()) for name in ("ckpt.json", "module.json")]
    for protocol in ("linear", "knn"):
        a, b = (result[protocol] for result in results)
        assert a["top1"] == pytest.approx(b["top1"], abs=1 / 192) and a["top5"] == pytest.approx(b["top5"], abs=1 / 192)
        assert 0.0 <= a["top1"] <= a["top5"] <= 1.0
    assert results[0]["num_train"] == 384 and results[0]["num_eval"] == 192

    # The features themselves agree, and a sweep re-uses the cache instead of the encoder.
    from simclr_tf.data import SourceConfig, build_source
    from simclr_tf.evaluation.features import encode, encoder_from_checkpoint, encoder_from_module
    from simclr_tf.run_dir import RunDir

    source = build_source(SourceConfig(split="test"))
    checkpoint_features, labels = encode(encoder_from_checkpoint(RunDir.open(pretrained)), source, max_examples=64,
                                         batch_size=64)
    module_features, module_labels = encode(encoder_from_module(module, 16), source, max_examples=64, batch_size=64)
    np.testing.assert_array_equal(labels, module_labels)
    np.testing.assert_allclose(checkpoint_features, module_features, atol=1e-5)
    again = check_ok(run_module("simclr_tf.evaluation", f"--model_dir={pretrained}", *common, "--classifier=lbfgs",
                                "--l2_grid_size=3", f"--feature_cache_dir={tmp_path / 'cache'}",
                                f"--results={tmp_path / 'lbfgs.json'}"))
    assert again.stdout.count("from cache") == 2
    assert json.loads((tmp_path / "lbfgs.json").read_text())["linear"]["classifier"] == "lbfgs_logistic_regression"


def test_evaluation_names_a_missing_module_and_a_wrong_output(pretrained, tmp_path):
    missing = run_module("simclr_tf.evaluation", f"--module={tmp_path}/nothing", "--image_size=16",
                         "--dataset=fashion_mnist_offline")
    assert missing.returncode == 1 and "--module=" in error_line(missing) and "saved_model.pb" in error_line(missing)
    wrong = run_module("simclr_tf.evaluation", f"--model_dir={pretrained}", "--output=block_group9", *SMALL_EVAL)
    assert wrong.returncode == 1 and "--output=block_group9" in error_line(wrong)


def test_finetuning_on_a_label_subset_writes_and_reuses_its_ids(pretrained, tmp_path):
    model_dir = str(tmp_path / "subset")
    flags = [*TINY_FLAGS, f"--model_dir={model_dir}", "--train_mode=finetune", f"--checkpoint={pretrained}",
             "--examples_per_class=4", "--noexport_hub_module"]
    first = check_ok(run_cli(*flags, "--train_steps=3"))
    assert "labelled subset: 40 of 60000 examples (4 per class, seed 0)" in first.stdout
    with open(os.path.join(model_dir, "subset_ids.json")) as f:
        record = json.load(f)
    ids = np.array(record["ids"])

    from simclr_tf.data.idx import load_fashion_mnist

    _, all_labels = load_fashion_mnist("/usr/share/datasets/fashion-mnist", "train")
    assert np.bincount(all_labels[ids], minlength=10).tolist() == [4] * 10 == record["counts_per_class"]
    resumed = check_ok(run_cli(*flags, "--train_steps=6", "--seed=1"))  # Another seed must not change the subset.
    assert f"ids from {os.path.join(model_dir, 'subset_ids.json')}" in resumed.stdout
    with open(os.path.join(model_dir, "subset_ids.json")) as f:
        assert json.load(f)["ids"] == record["ids"]

    other = str(tmp_path / "same_labels")
    reused = check_ok(run_cli(*TINY_FLAGS, f"--model_dir={other}", "--train_mode=finetune", f"--checkpoint={pretrained}",
                              f"--subset_ids={model_dir}/subset_ids.json", "--train_steps=1", "--noexport_hub_module"))
    assert "labelled subset: 40 of 60000" in reused.stdout
    with open(os.path.join(other, "subset_ids.json")) as f:
        assert json.load(f)["ids"] == record["ids"]


def test_label_subsets_are_for_finetuning_only(tmp_path):
    result = run_cli(*TINY_FLAGS, f"--model_dir={tmp_path}", "--label_fraction=0.01", "--train_steps=1")
    assert result.returncode == 1 and "--label_fraction" in error_line(result) and "finetune" in error_line(result)


def test_transfer_writes_one_table_and_records_a_failing_task(pretrained, tmp_path):
    missing = tmp_path / "not_prepared.cfg"
    missing.write_text(f"--task_name=not_prepared\n--dataset=mnist\n--data_dir={tmp_path}/tfds\n")
    result = run_module(
        "simclr_tf.evaluation.transfer", f"--model_dir={pretrained}", f"--results_dir={tmp_path / 'out'}",
        f"--tasks={REPO}/flags/transfer/fashion_mnist_offline.cfg,{missing}",
        "--task_flags=" + ",".join([*SMALL_EVAL, "--l2_grid_size=3", "--image_size=16"]))
    assert result.returncode == 1
    assert error_line(result).startswith(f"error: 1 of 2 tasks failed: {missing}: tfds dataset 'mnist' is not prepared")
    with open(tmp_path / "out" / "transfer_results.json") as f:
        table = json.load(f)
    fashion, failed = table["tasks"]
    assert fashion["task"] == "fashion_mnist" and 0.0 <= fashion["linear"]["top1"] <= fashion["linear"]["top5"] <= 1.0
    assert fashion["linear"]["classifier"] == "lbfgs_logistic_regression" and "knn" in fashion
    assert "not prepared" in failed["error"]
    markdown = (tmp_path / "out" / "transfer_results.md").read_text()
    assert f"| fashion_mnist | linear | {100 * fashion['linear']['top1']:.2f} |" in markdown
    assert "| not_prepared.cfg | - |" in markdown


def test_every_transfer_flagfile_parses_into_a_task():
    from simclr_tf.evaluation.task_flags import task_from_flags
    from simclr_tf.evaluation.task_flags import parse_task

    paths = sorted(glob.glob(os.path.join(REPO, "flags", "transfer", "*.cfg")))
    names = {os.path.basename(p)[:-4] for p in paths}
    assert {"food101", "cifar10", "cifar100", "birdsnap", "sun397", "stanford_cars", "fgvc_aircraft", "voc2007", "dtd",
            "oxford_iiit_pet", "caltech101", "flowers102"} <= names
    for path in paths:
        task = task_from_flags(parse_task(path, [], 0))
        with open(path) as f:
            header = "".join(line for line in f if line.startswith("#"))
        assert f"--tasks=flags/transfer/{os.path.basename(path)}" in header and "Expected" in header, path
        assert task.name == os.path.basename(path)[:-4] or path.endswith("fashion_mnist_offline.cfg")
