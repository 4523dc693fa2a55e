"""Every flagfile in flags/ parses with the CLI's flags into a valid run configuration,
and opens with how to run it, its runtime and its expected result (STYLE.md)."""

import glob
import json
import os
import subprocess
import sys

import pytest

from cli_helpers import REPO, environment

FLAGFILES = sorted(glob.glob(os.path.join(REPO, "flags", "*.cfg"))
                   + glob.glob(os.path.join(REPO, "flags", "semi_supervised", "*.cfg")))

PARSE_ALL = """
import json, sys
from simclr_tf import run
results = {}
for path in sys.argv[1:]:
    run.FLAGS.unparse_flags()
    try:
        run.FLAGS(["run", f"--flagfile={path}", "--model_dir=/tmp/unused"])
        config = run.config_from_flags(run.FLAGS)
        results[path] = {"ok": True, "image_size": config.augment.image_size, "cifar_stem": config.model.cifar_stem,
                         "ops": list(config.augment.ops), "batch": config.train.train_batch_size}
    except Exception as error:
        results[path] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def parsed():
    result = subprocess.run([sys.executable, "-c", PARSE_ALL, *FLAGFILES], cwd=REPO, env=environment(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_paper_setups_and_the_quickstart_have_flagfiles():
    names = {os.path.basename(p) for p in FLAGFILES}
    assert {"quickstart_fashion_mnist.cfg", "cifar10_resnet18_pretrain.cfg", "cifar10_resnet50_pretrain.cfg",
            "imagenet_resnet50_1x_pretrain.cfg", "imagenet_resnet50_2x_pretrain.cfg", "imagenet_resnet50_4x_pretrain.cfg",
            "imagenet_finetune_1pct.cfg", "imagenet_finetune_10pct.cfg", "imagenet_linear_eval.cfg",
            "fashion_mnist_pretrain.cfg", "fashion_mnist_finetune.cfg", "fashion_mnist_distill.cfg"} <= names


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_flagfile_parses_into_a_config(parsed, path):
    assert parsed[path]["ok"], parsed[path]["error"]


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_flagfile_says_how_to_run_it_and_what_to_expect(path):
    with open(path) as f:
        header = [line for line in f if line.startswith("#")]
    text = "".join(header)
    assert "python -m simclr_tf.run --flagfile=" + os.path.relpath(path, REPO) in text
    assert "Expected" in text and ("Runtime" in text or "min" in text)


def test_cifar_setups_use_the_small_image_settings(parsed):
    for path, values in parsed.items():
        if "cifar10" in path:
            assert values["image_size"] == 32 and values["cifar_stem"] and "blur" not in values["ops"]
        if "imagenet" in path:
            assert values["image_size"] == 224 and not values["cifar_stem"] and values["batch"] == 4096
