"""A run's records are written only once the run knows it can continue the model_dir.

`python -m simclr_tf.run` on a model_dir that already holds a run resumes it. Before
anything is written there, the config asked for is compared with the recorded one:

  - a field that changes the weights' shapes or what they mean (architecture, head,
    optimizer slots, training mode, dataset, labelled subset) is an error naming each
    field with both values: resuming would fail half-way or silently mix two models;
  - any other difference (more steps, other eval settings, another precision) is safe:
    the run goes on with it, and the difference is appended to config_history.jsonl.

config.json and flags.json keep what the first run recorded: the config that made the
checkpoints, which every tool reads to rebuild the model.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
from typing import Any

import tensorflow as tf

from simclr_tf.config import RunConfig
from simclr_tf.io_utils import write_json_atomically, write_text_atomically
from simclr_tf.run_dir import CONFIG_FILE, CONFIG_HISTORY_FILE, FLAGS_FILE, RunDir, RunDirError, latest_checkpoint

# ModelConfig fields that decide the network's variables and what its outputs mean.
ARCHITECTURE_FIELDS = ("resnet_depth", "width_multiplier", "cifar_stem", "sk_ratio", "se_ratio", "proj_head_mode",
                       "proj_out_dim", "num_proj_layers", "ft_proj_selector")
# (RunConfig section, field): changing one of these changes the weights' shapes or meaning.
WEIGHT_DEFINING_FIELDS = (
    *(("model", field) for field in ARCHITECTURE_FIELDS),
    ("optimizer", "optimizer"),  # Its slot variables are in every checkpoint.
    ("train", "train_mode"), ("train", "lineareval_while_pretraining"),  # Which heads exist.
    ("train", "teacher"),  # What a distilled student learns.
    ("train", "label_fraction"), ("train", "examples_per_class"), ("train", "subset_ids"),  # Which labels.
    ("source", "dataset"),  # The supervised head's classes.
)
# Not settings of the run: where it is now, and whether this invocation trains or evaluates.
_NOT_COMPARED = {("", "model_dir"), ("", "mode")}


class ResumeError(RunDirError):
    """The config asked for cannot continue the run in model_dir; the message names each field."""


def changes(recorded: RunConfig, requested: RunConfig) -> dict[tuple[str, str], tuple[Any, Any]]:
    """{(section, field): (recorded value, requested value)} for every setting that differs."""
    old, new = dataclasses.asdict(recorded), dataclasses.asdict(requested)
    differences = {}
    for name, value in new.items():
        if isinstance(value, dict):
            differences.update({(name, field): (old[name].get(field), v) for field, v in value.items()
                                if old[name].get(field) != v})
        elif old.get(name) != value and ("", name) not in _NOT_COMPARED:
            differences[("", name)] = (old.get(name), value)
    return differences


def check_resumable(recorded: RunConfig, requested: RunConfig, model_dir: str) -> dict:
    """Raises ResumeError if `requested` changes a weight-defining field; returns the safe changes."""
    differences = changes(recorded, requested)
    conflicts = [key for key in WEIGHT_DEFINING_FIELDS if key in differences]
    if conflicts:
        # Bare field names: the same words as the flags of simclr_tf.run, and read as "the setting".
        listed = "; ".join(f"{key[1]}: model_dir has {differences[key][0]!r}, this run asks for "
                           f"{differences[key][1]!r}" for key in conflicts)
        raise ResumeError("model_dir", model_dir,
                          f"holds a run this config cannot continue ({listed}); use a new model_dir, or leave "
                          f"{'these settings' if len(conflicts) > 1 else 'this setting'} as the run has "
                          f"{'them' if len(conflicts) > 1 else 'it'} to resume it. Nothing was written")
    return differences


def _check_directory(model_dir: str) -> None:
    if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
        raise RunDirError("model_dir", model_dir, "is a file, not a directory")
    parent = os.path.dirname(os.path.normpath(model_dir))
    while parent and not tf.io.gfile.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not tf.io.gfile.isdir(parent):
        raise RunDirError("model_dir", model_dir, f"cannot be created: {parent} is a file, not a directory")


def recorded_config(model_dir: str) -> RunConfig | None:
    """The config model_dir's run recorded, or None when model_dir holds no run yet."""
    _check_directory(model_dir)
    if not tf.io.gfile.exists(os.path.join(model_dir, CONFIG_FILE)):
        return None
    return RunDir.open(model_dir).config


def prepare(config: RunConfig, flag_values: dict | None = None) -> str:
    """Checks that `config` can run in its model_dir, then records it; returns what it did, for the log.

    A new model_dir gets config.json (and flags.json: the command line, for people), and so
    does one whose run saved no checkpoint yet when `config` trains. A model_dir that holds a run is continued: nothing is replaced, and the settings that
    differ from the recorded ones are appended to config_history.jsonl.
    """
    recorded = recorded_config(config.model_dir)
    trains = config.mode in ("train", "train_then_eval")
    if recorded is not None and trains and latest_checkpoint(config.model_dir) is None:
        # A run that stopped before its first checkpoint (a typo in a flag, say) holds no
        # weights to protect: the corrected command starts it afresh.
        recorded = None
    if recorded is None:
        tf.io.gfile.makedirs(config.model_dir)
        config.write(os.path.join(config.model_dir, CONFIG_FILE))
        if flag_values is not None:
            write_json_atomically(os.path.join(config.model_dir, FLAGS_FILE), flag_values)
        return f"new run, config recorded in {os.path.join(config.model_dir, CONFIG_FILE)}"
    differences = check_resumable(recorded, config, config.model_dir)
    if not differences:
        return "same config as recorded"
    record = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "changes": {".".join(filter(None, key)): list(values) for key, values in sorted(differences.items())},
        "flags": flag_values,
    }
    _append_line(os.path.join(config.model_dir, CONFIG_HISTORY_FILE), json.dumps(record, sort_keys=True, default=str))
    return f"continues with {len(differences)} changed setting(s) recorded in {CONFIG_HISTORY_FILE}: " + ", ".join(
        f"{'.'.join(filter(None, key))} {old!r} -> {new!r}" for key, (old, new) in sorted(differences.items()))


def _append_line(path: str, line: str) -> None:
    """Appends one line; rewritten whole through gfile (object stores cannot append)."""
    previous = ""
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            previous = f.read()
    if previous and not previous.endswith("\n"):
        previous += "\n"
    write_text_atomically(path, previous + line + "\n")
