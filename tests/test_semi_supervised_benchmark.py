"""benchmarks/semi_supervised.py end to end with tiny settings: every step of the recipe runs as its
command, in order, and lands in the JSON and Markdown table; a second call reuses the finished steps."""

import json
import subprocess
import sys

from simclr_tf.run_dir import RunDir
from tests.cli_helpers import REPO, environment

TINY = ["--fractions=0.01", "--width_multiplier=0.125", "--finetune_epochs=0.01:1",
        "--stage_flags=--train_steps=2,--train_batch_size=32,--checkpoint_steps=2,--steps_per_loop=1,"
        "--eval_steps=1,--eval_batch_size=100"]


def run_benchmark(output_dir):
    return subprocess.run([sys.executable, "benchmarks/semi_supervised.py", f"--output_dir={output_dir}", *TINY],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=environment())


def test_the_recipe_runs_in_order_and_is_tabulated(tmp_path):
    first = run_benchmark(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    with open(tmp_path / "semi_supervised.json") as f:
        record = json.load(f)
    rows = {row["name"]: row for row in record["rows"]}
    assert list(rows) == ["pretrain", "supervised_1pct", "finetune_1pct_selector0", "finetune_1pct_selector1",
                          "distill_1pct_self", "distill_1pct_half"]
    for name, row in rows.items():
        assert row["seconds"] > 0
        if name != "pretrain":
            assert 0 <= row["top1"] <= 1 and row["num_eval"] == 100
    assert len(record["summary"]) == 2

    def config(name):
        return RunDir.open(str(tmp_path / name)).config

    pretrain = str(tmp_path / "pretrain")
    assert config("pretrain").model.num_proj_layers == 3 and not config("pretrain").train.lineareval_while_pretraining
    assert config("supervised_1pct").checkpoint is None and config("supervised_1pct").train.label_fraction == 0.01
    for selector in (0, 1):
        tuned = config(f"finetune_1pct_selector{selector}")
        assert (tuned.checkpoint, tuned.model.ft_proj_selector) == (pretrain, selector)
    student = config("distill_1pct_self")
    assert (student.train.teacher, student.checkpoint) == (str(tmp_path / "finetune_1pct_selector1"), pretrain)
    assert student.model.width_multiplier == 0.125 and config("distill_1pct_half").model.width_multiplier == 0.0625
    assert config("distill_1pct_half").checkpoint is None
    table = (tmp_path / "semi_supervised.md").read_text()
    assert "| 1% | self-distilled student (R18 0.125x, from the pretrained weights) |" in table

    again = run_benchmark(tmp_path)
    assert again.returncode == 0 and again.stdout.count("(done before: reused)") == 6
    with open(tmp_path / "semi_supervised.json") as f:
        assert [row["seconds"] for row in json.load(f)["rows"]] == [row["seconds"] for row in rows.values()]
