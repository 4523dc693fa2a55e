"""simclr_tf.cli_errors: the one place where config fields and arguments become flags."""

import subprocess
import sys

import pytest
from absl import flags

from cli_helpers import REPO, TINY_FLAGS, environment, error_line, run_cli
from simclr_tf.cli_errors import flag_message
from simclr_tf.config import ModelConfig, TrainConfig
from simclr_tf.errors import ConfigError, PathError, UserError


@pytest.fixture
def values():
    """A tool's flags: some share a field's name, one is named differently (augmentations)."""
    values = flags.FlagValues()
    for name in ("train_batch_size", "warmup_epochs", "augmentations", "checkpoint"):
        flags.DEFINE_string(name, None, "", flag_values=values)
    values(["tool", "--checkpoint=/runs/a/ckpt-3"])
    return values


def test_fields_become_the_flags_of_this_tool(values):
    error = ConfigError("OptimizerConfig.warmup_epochs", "gives 10 warmup steps, not fewer than the 5 training "
                        "steps (TrainConfig.train_steps); lower OptimizerConfig.warmup_epochs", value=10)
    # train_steps is no flag of this tool: the field keeps its Python name rather than a made-up flag.
    assert flag_message(error, values) == ("--warmup_epochs=10 gives 10 warmup steps, not fewer than the 5 "
                                           "training steps (TrainConfig.train_steps); lower --warmup_epochs")


def test_a_renamed_flag_is_named_by_the_table(values):
    assert flag_message(ConfigError("AugmentConfig.ops", "holds unknown augmentation(s) ['x']"), values) == \
        "--augmentations holds unknown augmentation(s) ['x']"


def test_config_validation_names_the_field_and_the_cli_the_flag(values):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(train_batch_size=0)
    assert str(caught.value) == "TrainConfig.train_batch_size must be >= 1, got 0"
    assert flag_message(caught.value, values) == "--train_batch_size must be >= 1, got 0"
    with pytest.raises(ConfigError, match=r"ModelConfig.ft_proj_selector must be in \[0, ModelConfig.num_proj_"):
        ModelConfig(num_proj_layers=2, ft_proj_selector=3)


def test_a_path_is_named_by_its_flag_only_when_the_user_gave_it(values):
    given = PathError("checkpoint", "/runs/a/ckpt-3", "no such checkpoint")
    assert flag_message(given, values) == "--checkpoint=/runs/a/ckpt-3: no such checkpoint"
    # Found by the library (the newest checkpoint of a model_dir, say): no flag to blame.
    found = PathError("checkpoint", "/runs/a/ckpt-9", "does not hold this model's weights")
    assert flag_message(found, values) == "checkpoint /runs/a/ckpt-9: does not hold this model's weights"


def test_messages_become_one_line(values):
    assert flag_message(UserError("two\n   lines"), values) == "two lines"


def test_an_unexpected_error_keeps_its_traceback(tmp_path):
    """Only user errors become one line: a ValueError from a bug is not dressed up as one."""
    script = ("import simclr_tf.run as cli\n"
              "def broken(config, flag_values=None, printer=None):\n"
              "    raise ValueError('a bug, not a user error')\n"
              "cli.run = broken\n"
              "from absl import app\n"
              "app.run(cli.main)\n")
    result = subprocess.run([sys.executable, "-c", script, *TINY_FLAGS, f"--model_dir={tmp_path}"], cwd=REPO,
                            env=environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and error_line(result) == "ValueError: a bug, not a user error"


def test_a_user_error_is_one_line_naming_the_flag(tmp_path):
    result = run_cli(*TINY_FLAGS, f"--model_dir={tmp_path}", "--train_steps=2", "--cpu_replicas=3",
                     "--train_batch_size=16")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert error_line(result) == ("error: --train_batch_size=16 is not divisible by the 3 replicas in sync; "
                                  "use a multiple of 3")
