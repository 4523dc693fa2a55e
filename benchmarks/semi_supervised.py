"""Benchmark: SimCLRv2's semi-supervised recipe end to end on Fashion-MNIST (Debian's offline copy).

    PYTHONPATH=. .venv/bin/python benchmarks/semi_supervised.py [--output_dir=runs/semi_supervised] \\
        [--fractions=0.01,0.1]

Runs the documented sequence (flags/semi_supervised/*.cfg), each step as the command a user types
(`python -m simclr_tf.run --flagfile=...`), and tabulates top-1 on the 10,000 test images:
  1. pretrain without labels, 3-layer projection head;
  2. per label fraction (class-balanced subsets):
     - supervised from scratch on those labels (the baseline),
     - fine-tuned from the encoder (ft_proj_selector 0) and from the head's middle layer (selector 1),
     - the selector-1 model distilled on all 60,000 training images without labels into (a) the same
       architecture, starting from the pretrained weights (self-distillation), (b) a student of half
       the width from random weights.
Writes semi_supervised.json and semi_supervised.md to --output_dir after every step. A step that the
JSON lists as finished is not run again (its time is kept), and one that was interrupted resumes
from its checkpoint, so a stopped benchmark continues where it was; delete --output_dir to start over.
Measured on 2 CPU cores: the README's table, and the time it gives.
SimCLRv2: Chen et al. 2020, arXiv 2006.10029 (sections 2-3).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

from absl import app, flags

from simclr_tf.io_utils import write_json_atomically, write_text_atomically

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILES = os.path.join(REPO, "flags", "semi_supervised")

flags.DEFINE_string("output_dir", "runs/semi_supervised", "Where the runs, semi_supervised.json and .md go.")
flags.DEFINE_list("fractions", ["0.01", "0.1"], "Label fractions to fine-tune on.")
flags.DEFINE_float("width_multiplier", 0.5, "Width of the pretrained network (the half-width student: half).")
flags.DEFINE_list("finetune_epochs", ["0.01:60", "0.1:20"],
                  "FRACTION:EPOCHS of fine-tuning and of the supervised baseline (others: the flagfile's 60).")
flags.DEFINE_list("stage_flags", [], "More flags for every step, e.g. --train_steps=2,--eval_steps=1 (a smoke run).")
FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    description: str
    flags: tuple[str, ...]
    fraction: float | None = None  # None: pretraining.
    role: str = ""  # How the summary refers to it: scratch, selector0, teacher, self, half.


def percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def plan(output_dir: str, fractions: list[float], width: float, epochs: dict[float, int]) -> list[Step]:
    def flagfile(name):
        return f"--flagfile={os.path.join(FLAGFILES, f'fashion_mnist_{name}.cfg')}"

    def model_dir(name):
        return f"--model_dir={os.path.join(output_dir, name)}"

    pretrain = os.path.join(output_dir, "pretrain")
    width_flag = f"--width_multiplier={width:g}"
    steps = [Step("pretrain", f"SimCLR pretraining, no labels (R18 {width:g}x, 3-layer head)",
                  (flagfile("pretrain"), model_dir("pretrain"), width_flag))]
    for fraction in fractions:
        tag = f"{100 * fraction:g}pct"
        labels = (f"--label_fraction={fraction:g}",) + (
            (f"--train_epochs={epochs[fraction]}",) if fraction in epochs else ())
        teacher = os.path.join(output_dir, f"finetune_{tag}_selector1")
        steps += [
            Step(f"supervised_{tag}", f"supervised from scratch (R18 {width:g}x)",
                 (flagfile("finetune"), model_dir(f"supervised_{tag}"), width_flag, "--ft_proj_selector=0", *labels),
                 fraction, "scratch"),
            Step(f"finetune_{tag}_selector0", "fine-tuned from the encoder (selector 0)",
                 (flagfile("finetune"), model_dir(f"finetune_{tag}_selector0"), width_flag, f"--checkpoint={pretrain}",
                  "--ft_proj_selector=0", *labels), fraction, "selector0"),
            Step(f"finetune_{tag}_selector1", "fine-tuned from the head's middle layer (selector 1): the teacher",
                 (flagfile("finetune"), model_dir(f"finetune_{tag}_selector1"), width_flag, f"--checkpoint={pretrain}",
                  "--ft_proj_selector=1", *labels), fraction, "teacher"),
            Step(f"distill_{tag}_self", f"self-distilled student (R18 {width:g}x, from the pretrained weights)",
                 (flagfile("distill"), model_dir(f"distill_{tag}_self"), width_flag, f"--teacher={teacher}",
                  f"--checkpoint={pretrain}", "--ft_proj_selector=1"), fraction, "self"),
            Step(f"distill_{tag}_half", f"half-width student (R18 {width / 2:g}x, from random weights)",
                 (flagfile("distill"), model_dir(f"distill_{tag}_half"), f"--width_multiplier={width / 2:g}",
                  f"--teacher={teacher}", "--ft_proj_selector=0"), fraction, "half"),
        ]
    return steps


def run_step(step: Step, extra_flags: list[str], log_path: str) -> float:
    """Runs the step's command (its output to log_path and, in brief, to stdout); returns its seconds."""
    command = [sys.executable, "-m", "simclr_tf.run", *step.flags, *extra_flags]
    print(f"$ {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "PYTHONPATH": REPO})
        for line in process.stdout:
            log.write(line)
            if line.startswith(("step ", "eval at", "error", "labelled subset", "teacher:")):
                print(f"  {line.rstrip()}", flush=True)
    if process.wait():
        raise SystemExit(f"error: step {step.name} failed (exit {process.returncode}); its output: {log_path}")
    return time.monotonic() - started


def evaluation(output_dir: str, step: Step) -> tuple[float, int]:
    """(top-1, number of test images) from the step's result.json."""
    with open(os.path.join(output_dir, step.name, "result.json")) as f:
        result = json.load(f)
    return result["label_top_1_accuracy"], result["num_eval_examples"]


def summary(rows: list[dict], fractions: list[float]) -> list[str]:
    """The paper's two claims, as measured: distillation vs its teacher, pretraining vs scratch."""
    lines = []
    for fraction in fractions:
        by_role = {row["role"]: row["top1"] for row in rows if row["fraction"] == fraction and row["top1"] is not None}
        if {"self", "teacher"} <= set(by_role):
            gain = 100 * (by_role["self"] - by_role["teacher"])
            lines.append(f"{percent(fraction)} labels: self-distilled student {gain:+.2f} points vs its teacher "
                         f"({'reached' if gain >= 0 else 'NOT reached'}: student >= teacher)")
        if {"teacher", "selector0", "scratch"} <= set(by_role):
            best = max(by_role["teacher"], by_role["selector0"])
            lines.append(f"{percent(fraction)} labels: fine-tuning from pretraining {100 * (best - by_role['scratch']):+.2f} "
                         f"points vs supervised from scratch (best selector)")
    return lines


def markdown(record: dict) -> str:
    lines = ["# SimCLRv2 semi-supervised recipe, Fashion-MNIST", "",
             f"Top-1 on the {record['num_eval']} Fashion-MNIST test images. Command: `{record['command']}`. "
             f"Total {record['total_minutes']:.1f} min.", "",
             "| labels | model | top-1 | minutes |", "|---|---|--:|--:|"]
    for row in record["rows"]:
        labels = percent(row["fraction"]) if row["fraction"] is not None else "none"
        accuracy = f"{100 * row['top1']:.2f}%" if row["top1"] is not None else "-"
        minutes = f"{row['seconds'] / 60:.1f}" if row["seconds"] is not None else "-"
        lines.append(f"| {labels} | {row['description']} | {accuracy} | {minutes} |")
    return "\n".join(lines + [""] + [f"- {line}" for line in record["summary"]]) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        fractions = [float(value) for value in FLAGS.fractions]
        epochs = {float(key): int(value) for key, value in (item.split(":") for item in FLAGS.finetune_epochs)}
    except ValueError as error:
        raise SystemExit(f"error: --fractions / --finetune_epochs: {error}")
    if not all(0 < fraction <= 1 for fraction in fractions):
        raise SystemExit(f"error: --fractions must be in (0, 1], got {FLAGS.fractions}")
    output_dir = os.path.abspath(FLAGS.output_dir)
    os.makedirs(output_dir, exist_ok=True)
    json_path = os.path.join(output_dir, "semi_supervised.json")
    previous = {}
    if os.path.exists(json_path):
        with open(json_path) as f:
            previous = {row["name"]: row for row in json.load(f)["rows"]}
    steps = plan(output_dir, fractions, FLAGS.width_multiplier, epochs)
    command = " ".join(["benchmarks/semi_supervised.py", *sys.argv[1:]])
    rows, started = [], time.monotonic()
    for number, step in enumerate(steps, 1):
        # The JSON lists a step once it has finished; one interrupted is run again and resumes.
        done = step.name in previous and (
            step.fraction is None or os.path.exists(os.path.join(output_dir, step.name, "result.json")))
        elapsed = time.monotonic() - started
        print(f"[{number}/{len(steps)}] {step.name}: {step.description}"
              f"{' (done before: reused)' if done else ''} ({elapsed / 60:.1f} min so far)", flush=True)
        seconds = previous.get(step.name, {}).get("seconds") if done else run_step(
            step, FLAGS.stage_flags, os.path.join(output_dir, f"{step.name}.log"))
        accuracy, num_eval = evaluation(output_dir, step) if step.fraction is not None else (None, None)
        rows.append({"name": step.name, "description": step.description, "fraction": step.fraction,
                     "role": step.role, "top1": accuracy, "num_eval": num_eval, "seconds": seconds,
                     "flags": list(step.flags)})
        known = [row["seconds"] for row in rows if row["seconds"] is not None]
        evaluated = {row["num_eval"] for row in rows if row["num_eval"]}
        record = {"command": command, "stage_flags": FLAGS.stage_flags, "num_eval": max(evaluated, default=0),
                  "rows": rows,
                  "total_minutes": sum(known) / 60, "summary": summary(rows, fractions)}
        write_json_atomically(json_path, record)
        write_text_atomically(os.path.join(output_dir, "semi_supervised.md"), markdown(record))
    print(markdown(record), flush=True)
    print(f"results: {json_path} (and semi_supervised.md)")


if __name__ == "__main__":
    app.run(main)
