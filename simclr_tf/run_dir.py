"""The one reader of a model_dir: what `python -m simclr_tf.run` left there, for every tool.

    model_dir/
      config.json                   the RunConfig (RunConfig.write; this module reads it back)
      flags.json                    the first command line's flags, for people
      config_history.jsonl          settings a resumed run changed (simclr_tf.run_records)
      run.lock                      who is training here now (simclr_tf.run_lock)
      checkpoint, ckpt-<step>.*     tf.train.CheckpointManager's checkpoints, named by step
      train_log.jsonl               one JSON record per loop of steps (training.progress)
      result.json, result_<step>.json   evaluations of checkpoints
      subset_ids.json               the labelled examples fine-tuning used, if a subset
      saved_model/<step>/           exported SavedModel / TF-Hub modules

Export, evaluation, transfer, plots and verification all open a run with `RunDir.open`,
so a field added to the config reaches them in one way: a model_dir of an older version
still loads (missing fields take their defaults) and a field this version does not know
is an error that names it. Paths go through tf.io.gfile, so gs:// model_dirs work too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import tensorflow as tf

from simclr_tf.config import RunConfig
from simclr_tf.errors import ConfigError, PathError

CONFIG_FILE = "config.json"
FLAGS_FILE = "flags.json"
CONFIG_HISTORY_FILE = "config_history.jsonl"
LOCK_FILE = "run.lock"
TRAIN_LOG_FILE = "train_log.jsonl"
RESULT_FILE = "result.json"
SUBSET_IDS_FILE = "subset_ids.json"
EXPORT_SUBDIR = "saved_model"
_CHECKPOINT_NAME = re.compile(r"ckpt-(\d+)$")
_RESULT_NAME = re.compile(r"^result_(\d+)\.json$")


class RunDirError(PathError, ValueError):
    """A directory is not a readable model_dir; the message names it and what is missing."""


class CheckpointError(PathError, ValueError):
    """A checkpoint cannot be used; the message names it."""


def step_of(checkpoint: str) -> int:
    """The training step in a checkpoint's name (simclr_tf.run names them ckpt-<step>)."""
    match = _CHECKPOINT_NAME.search(checkpoint)
    if not match:
        raise CheckpointError("checkpoint", checkpoint, "not named ckpt-<step>, so its training step is unknown")
    return int(match.group(1))


def latest_checkpoint(directory: str) -> str | None:
    """The newest checkpoint prefix in `directory`, or None (also when it does not exist)."""
    return tf.train.latest_checkpoint(directory) if tf.io.gfile.isdir(directory) else None


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from a prefix or from a directory holding checkpoints (its newest)."""
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise CheckpointError("checkpoint", path, "directory has no checkpoint")
        return latest
    if not tf.io.gfile.exists(f"{path}.index"):
        raise CheckpointError("checkpoint", path, f"no such checkpoint (expected {path}.index)")
    return path


def read_train_log(model_dir: str) -> list[dict]:
    """The records of model_dir/train_log.jsonl by step ([] before the first loop).

    Needs no config.json: the log is all training curves need. A resumed run logs again
    the steps after its last checkpoint: the later record of a step wins. A line the run
    is still writing (not yet valid JSON) is left out.
    """
    path = os.path.join(model_dir, TRAIN_LOG_FILE)
    if not tf.io.gfile.exists(path):
        return []
    by_step: dict[int, dict] = {}
    with tf.io.gfile.GFile(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
                by_step[int(record["step"])] = record
    return [by_step[step] for step in sorted(by_step)]


def read_results(model_dir: str) -> list[dict]:
    """The model_dir/result_<step>.json evaluations by step, each with its `global_step`."""
    results = []
    for name in tf.io.gfile.listdir(model_dir):
        match = _RESULT_NAME.match(name.rstrip("/"))
        if not match:
            continue
        try:
            with tf.io.gfile.GFile(os.path.join(model_dir, name)) as f:
                result = json.load(f)
        except json.JSONDecodeError:
            continue  # Written atomically: only a file broken by hand; nothing to read.
        if isinstance(result, dict):
            results.append({**result, "global_step": int(match.group(1))})
    return sorted(results, key=lambda result: result["global_step"])


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A model_dir and the RunConfig recorded in it (`config.model_dir` is where it is now)."""

    path: str
    config: RunConfig

    @classmethod
    def open(cls, path: str) -> "RunDir":
        if not path:
            raise RunDirError("model_dir", repr(path), "must be set (a simclr_tf.run model_dir)")
        if not tf.io.gfile.isdir(path):
            raise RunDirError("model_dir", path, "no such directory")
        config_path = os.path.join(path, CONFIG_FILE)
        if not tf.io.gfile.exists(config_path):
            raise RunDirError("model_dir", path, f"no {CONFIG_FILE} (not a simclr_tf.run model_dir?)")
        with tf.io.gfile.GFile(config_path) as f:
            text = f.read()
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise RunDirError("model_dir", path, f"{CONFIG_FILE} is not valid JSON ({error})") from error
        try:
            config = RunConfig.from_dict(values, origin=CONFIG_FILE)
        except ConfigError as error:  # The file is wrong, not the caller's arguments: name the file.
            raise RunDirError("model_dir", path, str(error)) from error
        # The directory may have been copied or moved since the run recorded it.
        return cls(path, dataclasses.replace(config, model_dir=path))

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def export_dir(self) -> str:
        return self.file(EXPORT_SUBDIR)

    def latest_checkpoint(self) -> str | None:
        return latest_checkpoint(self.path)

    def checkpoint(self, checkpoint: str | None = None) -> str:
        """`checkpoint` (a prefix, or a directory: its newest) or else the run's newest checkpoint."""
        if checkpoint:
            return resolve_checkpoint(checkpoint)
        latest = self.latest_checkpoint()
        if latest is None:
            raise CheckpointError("model_dir", self.path, "no checkpoint yet")
        return latest

