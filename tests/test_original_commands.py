"""The original google-research/simclr commands, typed as its README gives them."""

import subprocess
import sys

import pytest

from cli_helpers import REPO, check_ok, environment
from simclr_tf import run

# The original tf2 README's CIFAR-10 pretraining command (after `python run.py`).
ORIGINAL_CIFAR10_COMMAND = [
    "--train_mode=pretrain", "--train_batch_size=512", "--train_epochs=1000",
    "--learning_rate=1.0", "--weight_decay=1e-4", "--temperature=0.5",
    "--dataset=cifar10", "--image_size=32", "--eval_split=test", "--resnet_depth=18",
    "--use_blur=False", "--color_jitter_strength=0.5",
    "--model_dir=/tmp/simclr_test", "--use_tpu=False",
]

# Offline, cifar10 comes from tfds's mock (random images, real features); --download lets the
# mock's no-op preparation run. 256 examples: 10 warmup epochs of batch 512 = 5 warmup steps.
_UNDER_MOCKED_TFDS = """
import sys
import tensorflow_datasets as tfds
from absl import app
from simclr_tf import run
with tfds.testing.mock_data(num_examples=256):
    app.run(run.main, argv=["run"] + sys.argv[1:])
"""


def test_the_original_cifar10_command_with_three_steps_trains_in_its_warmup(tmp_path):
    command = [flag if not flag.startswith("--model_dir=") else f"--model_dir={tmp_path}"
               for flag in ORIGINAL_CIFAR10_COMMAND]
    result = check_ok(subprocess.run(
        [sys.executable, "-c", _UNDER_MOCKED_TFDS, *command, "--train_steps=3", "--download",
         "--export_hub_module=false"],
        cwd=REPO, env=environment(), capture_output=True, text=True, timeout=900))
    assert ("warning: --warmup_epochs=10 gives 5 warmup steps, not fewer than the 3 training steps: the learning "
            "rate stays in its linear warmup, rising to 0.8 (the peak 2 is never reached)") in result.stdout
    assert "step 3/3" in result.stdout
    # lr = 2.0 * step / 5 at steps 0, 1, 2 (logged after each step: the rate of the next).
    assert [line.rsplit("learning_rate ", 1)[1] for line in result.stdout.splitlines()
            if line.startswith("step ")] == ["0.4", "0.8", "1.2"]


@pytest.mark.parametrize("selector, layers, expected", [(-1, 2, 2), (-1, 3, 3), (1, 3, 1)])
def test_ft_proj_selector_minus_one_is_the_heads_last_layer_as_in_the_original(selector, layers, expected):
    run.FLAGS.unparse_flags()
    try:
        run.FLAGS(["run", "--model_dir=/tmp/unused", f"--ft_proj_selector={selector}", f"--num_proj_layers={layers}"])
        assert run.config_from_flags(run.FLAGS).model.ft_proj_selector == expected
    finally:
        run.FLAGS.unparse_flags()


def test_the_originals_master_flag_names_the_tpu_and_eval_name_is_accepted():
    run.FLAGS.unparse_flags()
    try:
        run.FLAGS(["run", "--model_dir=/tmp/unused", "--master=grpc://10.0.0.2:8470", "--eval_name=x"])
        assert run.config_from_flags(run.FLAGS).strategy.tpu_name == "grpc://10.0.0.2:8470"
        run.FLAGS(["run", "--model_dir=/tmp/unused", "--master=grpc://a", "--tpu_name=b"])
        assert run.config_from_flags(run.FLAGS).strategy.tpu_name == "b"
    finally:
        run.FLAGS.unparse_flags()
