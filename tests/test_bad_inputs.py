"""Bad inputs across the command-line tools: each ends with exit status 1 and one line
`error: ...` that names the problem and the flag or file, no traceback, and no file of an
existing run changed. The README's failure table lists these cases.

The cases run as subprocesses, two at a time (most of each is TensorFlow's import), against
one small finished run; its files are compared byte for byte before and after all of them.
"""

import concurrent.futures
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

from cli_helpers import REPO, TINY_FLAGS, check_ok, environment, run_cli
from export_helpers import tree

RUN = [*TINY_FLAGS, "--train_steps=2", "--checkpoint_steps=2"]


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    module: str
    args: tuple[str, ...]  # "{run}", "{tmp}", "{new}": the run's, a scratch and a fresh directory.
    expected: str  # A part of the error line, after "error: ".


CASES = [
    # simclr_tf.run
    Case("resume with another depth", "simclr_tf.run", (*RUN, "--model_dir={run}", "--resnet_depth=34"),
         "--model_dir={run}: holds a run this config cannot continue (resnet_depth: model_dir has 18, this run asks "
         "for 34)"),
    Case("resume with another head", "simclr_tf.run", (*RUN, "--model_dir={run}", "--proj_out_dim=64"),
         "proj_out_dim: model_dir has 128, this run asks for 64"),
    Case("resume with another optimizer", "simclr_tf.run", (*RUN, "--model_dir={run}", "--optimizer=adam"),
         "optimizer: model_dir has 'lars', this run asks for 'adam'"),
    Case("model_dir is a file", "simclr_tf.run", (*RUN, "--model_dir={tmp}/a_file"),
         "--model_dir={tmp}/a_file: is a file, not a directory"),
    Case("model_dir under a file", "simclr_tf.run", (*RUN, "--model_dir={tmp}/a_file/run"),
         "cannot be created: {tmp}/a_file is a file, not a directory"),
    Case("image too small for the stem", "simclr_tf.run", (*RUN, "--model_dir={new}", "--image_size=2"),
         "--image_size must be >= 8 for a ResNet with the CIFAR stem"),
    Case("unknown depth", "simclr_tf.run", (*RUN, "--model_dir={new}", "--resnet_depth=7"),
         "--resnet_depth must be one of (18, 34, 50, 101, 152, 200), got 7"),
    Case("zero batch", "simclr_tf.run", (*RUN, "--model_dir={new}", "--train_batch_size=0"),
         "--train_batch_size must be >= 1, got 0"),
    Case("zero temperature", "simclr_tf.run", (*RUN, "--model_dir={new}", "--temperature=0"),
         "--temperature must be > 0"),
    Case("gradient-cache chunk that does not divide the batch", "simclr_tf.run",
         (*RUN, "--model_dir={new}", "--gradient_cache_chunk_size=5"),
         "--gradient_cache_chunk_size=5 must divide the per-replica batch of 16 images (--train_batch_size over the "
         "replicas)"),
    Case("labels subset while pretraining", "simclr_tf.run", (*RUN, "--model_dir={new}", "--label_fraction=0.1"),
         "needs --train_mode='finetune'"),
    Case("unknown dataset", "simclr_tf.run", (*RUN, "--model_dir={new}", "--dataset=no_such_dataset"),
         "--dataset=no_such_dataset"),
    Case("missing fine-tuning checkpoint", "simclr_tf.run",
         (*RUN, "--model_dir={new}", "--train_mode=finetune", "--checkpoint={tmp}/none/ckpt-1"),
         "--checkpoint={tmp}/none/ckpt-1: no such checkpoint"),
    Case("corrupt config.json", "simclr_tf.run", (*RUN, "--model_dir={tmp}/broken_config"),
         "--model_dir={tmp}/broken_config: config.json is not valid JSON"),
    Case("evaluate a run without checkpoints", "simclr_tf.run", (*RUN, "--model_dir={tmp}/config_only", "--mode=eval"),
         "--model_dir={tmp}/config_only: no checkpoint to evaluate in it"),
    # simclr_tf.evaluation
    Case("evaluation: no such model_dir", "simclr_tf.evaluation", ("--model_dir={tmp}/none",),
         "--model_dir={tmp}/none: no such directory"),
    Case("evaluation: not a model_dir", "simclr_tf.evaluation", ("--model_dir={tmp}",),
         "--model_dir={tmp}: no config.json"),
    Case("evaluation: no such module", "simclr_tf.evaluation", ("--module={tmp}/none", "--image_size=16"),
         "--module={tmp}/none: no saved_model.pb"),
    Case("evaluation: unknown protocol", "simclr_tf.evaluation", ("--model_dir={run}", "--protocols=bogus"),
         "protocols must be a non-empty subset of ('linear', 'knn'), got ('bogus',)"),
    Case("evaluation: checkpoint of another run", "simclr_tf.evaluation",
         ("--model_dir={run}", "--checkpoint={tmp}/none/ckpt-2"), "--checkpoint={tmp}/none/ckpt-2: no such checkpoint"),
    # simclr_tf.evaluation.transfer
    Case("transfer: no task file", "simclr_tf.evaluation.transfer",
         ("--model_dir={run}", "--tasks={tmp}/none.cfg", "--results_dir={tmp}/transfer"),
         "--tasks: {tmp}/none.cfg matches no file"),
    Case("transfer: unknown flag in a task file", "simclr_tf.evaluation.transfer",
         ("--model_dir={run}", "--tasks={tmp}/typo.cfg", "--results_dir={tmp}/transfer"),
         "1 of 1 tasks failed: {tmp}/typo.cfg: "),
    # tf_hub_export and its verify
    Case("export: no model_dir", "tf_hub_export", (), "--model_dir must be set"),
    Case("export: missing checkpoint", "tf_hub_export", ("--model_dir={run}", "--checkpoint={run}/ckpt-99"),
         "--checkpoint={run}/ckpt-99: no such checkpoint"),
    Case("export: keep nothing", "tf_hub_export", ("--model_dir={run}", "--keep_hub_module_max=0",
                                                   "--export_dir={tmp}/hub"), "--keep_hub_module_max"),
    Case("verify: no module", "tf_hub_export.verify", ("{tmp}/none",), "{tmp}/none: no SavedModel here"),
    Case("verify: checkpoint without its run", "tf_hub_export.verify",
         ("{run}/saved_model/2", "--checkpoint={run}/ckpt-2"), "--checkpoint needs --model_dir"),
    # simclr_tf.plots
    Case("plots: no such model_dir", "simclr_tf.plots", ("curves", "--model_dir={tmp}/none"),
         "--model_dir={tmp}/none: no such directory"),
    Case("plots: no training log", "simclr_tf.plots", ("curves", "--model_dir={tmp}/config_only"),
         "--model_dir={tmp}/config_only: no train_log.jsonl"),
    Case("plots: unknown command", "simclr_tf.plots", ("bogus", "--model_dir={run}"),
         "give one command: curves, augmentations, embedding (got ['bogus'])"),
    Case("plots: zero images", "simclr_tf.plots", ("augmentations", "--model_dir={run}", "--num_images=0"),
         "--num_images must be >= 1, got 0"),
]


def _run(case: Case, run_dir: str, scratch: str) -> subprocess.CompletedProcess:
    new = os.path.join(scratch, "new", str(CASES.index(case)))
    args = [arg.format(run=run_dir, tmp=scratch, new=new) for arg in case.args]
    return subprocess.run([sys.executable, "-m", case.module, *args], cwd=REPO, env=environment(),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("run"))
    scratch = str(tmp_path_factory.mktemp("scratch"))
    check_ok(run_cli(*RUN, f"--model_dir={run_dir}"))
    with open(os.path.join(scratch, "a_file"), "w") as f:
        f.write("not a directory")
    shutil.copytree(run_dir, os.path.join(scratch, "broken_config"))
    with open(os.path.join(scratch, "broken_config", "config.json"), "w") as f:
        f.write('{"model": ')
    os.makedirs(os.path.join(scratch, "config_only"))
    shutil.copy(os.path.join(run_dir, "config.json"), os.path.join(scratch, "config_only"))
    with open(os.path.join(scratch, "typo.cfg"), "w") as f:
        f.write("--dataset=fashion_mnist_offline\n--max_train_exampels=10\n")
    before = {name: tree(os.path.join(scratch, name)) for name in ("broken_config", "config_only")}
    before["run"] = tree(run_dir)
    # Training cases on the finished run take its run.lock before they read its config, so two
    # at once could see each other as "a run in use" instead of the error they test: they run
    # one after another in one worker, the other cases two at a time beside them.
    on_the_run = [case for case in CASES if case.module == "simclr_tf.run" and "--model_dir={run}" in case.args]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        one_by_one = pool.submit(lambda: [(case.name, _run(case, run_dir, scratch)) for case in on_the_run])
        beside = pool.map(lambda case: (case.name, _run(case, run_dir, scratch)),
                          [case for case in CASES if case not in on_the_run])
        results = dict([*one_by_one.result(), *beside])
    after = {name: tree(os.path.join(scratch, name)) for name in ("broken_config", "config_only")}
    after["run"] = tree(run_dir)
    return dict(results=results, run_dir=run_dir, scratch=scratch, before=before, after=after)


def test_there_are_at_least_25_cases_over_every_tool():
    assert len(CASES) >= 25
    assert {case.module for case in CASES} == {"simclr_tf.run", "simclr_tf.evaluation", "simclr_tf.evaluation.transfer",
                                               "tf_hub_export", "tf_hub_export.verify", "simclr_tf.plots"}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_ends_with_one_line_naming_it(case, outcomes):
    result = outcomes["results"][case.name]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    expected = case.expected.format(run=outcomes["run_dir"], tmp=outcomes["scratch"])
    assert lines[-1].startswith("error: ") and expected in lines[-1], lines[-1]


def test_no_file_of_an_existing_run_changed(outcomes):
    assert outcomes["after"] == outcomes["before"]
    assert json.loads(outcomes["before"]["run"]["config.json"])["model"]["resnet_depth"] == 18
