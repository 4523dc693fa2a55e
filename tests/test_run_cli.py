"""The training CLI end to end: checkpoints, summaries, results, resume, fine-tuning, bad flags."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from cli_helpers import TINY_FLAGS, check_ok, error_line, run_cli, train_log


def checkpoint_steps(model_dir):
    return sorted(int(p.rsplit("-", 1)[1].split(".")[0]) for p in glob.glob(os.path.join(model_dir, "ckpt-*.index")))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 6-step pretraining run with evaluation, then a second invocation to step 9."""
    model_dir = str(tmp_path_factory.mktemp("pretrain"))
    first = check_ok(run_cli(*TINY_FLAGS, f"--model_dir={model_dir}", "--train_steps=6", "--mode=train_then_eval"))
    with open(os.path.join(model_dir, "result.json")) as f:
        first_result = json.load(f)
    first_log = train_log(model_dir)
    second = check_ok(run_cli(*TINY_FLAGS, f"--model_dir={model_dir}", "--train_steps=9"))
    return dict(model_dir=model_dir, first=first, second=second, first_result=first_result, first_log=first_log)


def test_pretraining_writes_checkpoints_summaries_and_results(pretrained):
    model_dir = pretrained["model_dir"]
    assert checkpoint_steps(model_dir) == [3, 6, 9]
    assert [r["step"] for r in pretrained["first_log"]] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(r["contrast_loss"]) and r["contrast_loss"] > 0 for r in pretrained["first_log"])
    events = glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*"))
    tags = {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(path)
            for value in event.summary.value}
    assert {"train/contrast_loss", "train/contrast_acc", "train/contrast_entropy", "train/supervised_loss",
            "train/supervised_acc", "train/weight_decay", "learning_rate", "augmented_view_1"} <= tags
    result = pretrained["first_result"]
    assert result["global_step"] == 6 and result["num_eval_examples"] == 128
    assert 0.0 <= result["label_top_1_accuracy"] <= result["label_top_5_accuracy"] <= 1.0
    with open(os.path.join(model_dir, "flags.json")) as f:
        recorded = json.load(f)
    # The first command's flags; the second's differences are history, not a replacement.
    assert recorded["train_batch_size"] == 16 and recorded["mode"] == "train_then_eval"
    assert "alsologtostderr" not in recorded
    with open(os.path.join(model_dir, "config_history.jsonl")) as f:
        (history,) = [json.loads(line) for line in f]
    assert history["changes"] == {"train.train_steps": [6, 9]} and history["flags"]["mode"] == "train"
    assert "ETA" in pretrained["first"].stdout and "img/s" in pretrained["first"].stdout
    # The end of training exports a TF-Hub module; the second run's export replaced the first.
    assert f"exported TF-Hub module {model_dir}/saved_model/6" in pretrained["first"].stdout
    assert os.listdir(os.path.join(model_dir, "saved_model")) == ["9"]


def test_second_invocation_resumes_at_the_saved_step(pretrained):
    assert "resumed from" in pretrained["second"].stdout and "ckpt-6" in pretrained["second"].stdout
    resumed = train_log(pretrained["model_dir"])[len(pretrained["first_log"]):]
    assert [r["step"] for r in resumed] == [7, 8, 9]
    # The schedule continues too: linear warmup 0, cosine over 9 steps, so lr(7) < lr(1).
    assert resumed[0]["learning_rate"] < pretrained["first_log"][0]["learning_rate"]


def test_finetuning_starts_from_the_pretraining_checkpoint_and_reports_accuracy(pretrained, tmp_path):
    model_dir = str(tmp_path / "finetune")
    result = check_ok(run_cli(
        *TINY_FLAGS, f"--model_dir={model_dir}", "--train_mode=finetune", f"--checkpoint={pretrained['model_dir']}",
        "--train_steps=3", "--mode=train_then_eval", "--fine_tune_after_block=2",
    ))
    assert f"initialised from {pretrained['model_dir']}" in result.stdout
    with open(os.path.join(model_dir, "result.json")) as f:
        finetuned = json.load(f)
    assert finetuned["global_step"] == 3 and 0.0 <= finetuned["label_top_1_accuracy"] <= 1.0
    # Frozen parts (stem, block groups 1-2) keep the pretrained weights; later groups change.
    pretrained_reader = tf.train.load_checkpoint(os.path.join(pretrained["model_dir"], "ckpt-9"))
    finetuned_reader = tf.train.load_checkpoint(os.path.join(model_dir, "ckpt-3"))
    kernels = [k for k in finetuned_reader.get_variable_to_shape_map() if "resnet" in k and "kernel" in k
               and "OPTIMIZER" not in k and "optimizer" not in k]
    frozen = [k for k in kernels if "initial_conv" in k or "block_group1" in k or "block_group2" in k]
    trained = [k for k in kernels if "block_group4" in k]
    assert frozen and trained
    for key in frozen:
        np.testing.assert_array_equal(finetuned_reader.get_tensor(key), pretrained_reader.get_tensor(key))
    assert any(not np.array_equal(finetuned_reader.get_tensor(k), pretrained_reader.get_tensor(k)) for k in trained)


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--cpu_replicas=3", "--train_batch_size=16"], "--train_batch_size"),
        (["--dataset=no_such_dataset_anywhere"], "--dataset"),
        (["--image_size=8", "--use_blur"], "image_size"),
        (["--resnet_depth=7"], "--resnet_depth"),
        (["--temperature=0"], "--temperature"),  # (warmup longer than training is a warning: test_original_commands)
    ],
)
def test_bad_flags_exit_with_one_line_naming_the_flag(flags, named, tmp_path):
    result = run_cli(*TINY_FLAGS, f"--model_dir={tmp_path}", "--train_steps=2", *flags)
    assert result.returncode != 0
    line = error_line(result)
    assert line.startswith("error: ") and named in line, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_mixed_bfloat16_pretraining_runs_with_finite_float32_losses(tmp_path):
    check_ok(run_cli(*TINY_FLAGS, f"--model_dir={tmp_path}", "--train_steps=2", "--precision=mixed_bfloat16"))
    log = train_log(str(tmp_path))
    assert [r["step"] for r in log] == [1, 2]
    assert all(np.isfinite(r["total_loss"]) and r["contrast_loss"] > 0 for r in log)


def test_xla_step_computes_the_same_first_loss(pretrained, tmp_path):
    check_ok(run_cli(*TINY_FLAGS, f"--model_dir={tmp_path}", "--train_steps=1", "--jit_compile"))
    xla, plain = train_log(str(tmp_path))[0], pretrained["first_log"][0]
    assert xla["step"] == plain["step"] == 1
    # Step 1's loss is computed before any update: same weights, same batch, another compiler.
    for name in ("contrast_loss", "supervised_loss"):
        assert xla[name] == pytest.approx(plain[name], rel=1e-4), name


def test_unknown_flag_in_a_flagfile_exits_naming_it(tmp_path):
    flagfile = tmp_path / "typo.cfg"
    flagfile.write_text("--resnet_depth=18\n--train_bach_size=16\n")
    result = run_cli(f"--flagfile={flagfile}", f"--model_dir={tmp_path}")
    assert result.returncode != 0
    assert "train_bach_size" in result.stderr and "Traceback" not in result.stderr


def test_evaluating_on_a_split_without_labels_exits_naming_the_flag(tmp_path):
    from PIL import Image

    images = tmp_path / "unlabeled"
    images.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(images / f"{i}.png")
    result = run_cli(*TINY_FLAGS, f"--model_dir={tmp_path / 'run'}", f"--dataset=folder:{images}",
                     "--eval_split=train", "--mode=eval")
    assert result.returncode != 0
    line = error_line(result)
    assert line.startswith("error: ") and "--eval_split=train" in line and "no labels" in line, result.stderr[-2000:]
