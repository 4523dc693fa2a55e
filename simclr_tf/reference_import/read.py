"""Reads the weights of an original google-research/simclr TF2 run: a SavedModel or a checkpoint.

    SavedModel: .../saved_model/<step>/ (a directory holding saved_model.pb), or
      .../saved_model/ (its newest numeric subdirectory) - the format of the published
      SimCLR v1/v2 TF2 models. Variables are keyed by their names
      ("resnet/block_group1/residual_block/conv2d_fixed_padding_2/conv2d_2/kernel:0").
    Checkpoint: a prefix .../ckpt-<step>, or a directory holding checkpoints (its newest).
      Variables are keyed by object path ("model/resnet_model/block_groups/0/layers/0/...")
      without the "/.ATTRIBUTES/VARIABLE_VALUE" suffix; optimizer state and the step are
      not weights and are left out.

Paths go through tf.io.gfile, so gs:// sources work too.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import saved_model_pb2, trackable_object_graph_pb2

from simclr_tf.errors import PathError

SAVED_MODEL = "saved_model"
CHECKPOINT = "checkpoint"
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_CHECKPOINT_NAME = re.compile(r"ckpt-(\d+)$")
# Checkpoint entries that are not weights of the model.
_NOT_WEIGHTS = re.compile(r"^(_CHECKPOINTABLE_OBJECT_GRAPH$|optimizer/|global_step/|save_counter/)|\.OPTIMIZER_SLOT")


class ReferenceSourceError(PathError, ValueError):
    """SRC is neither an original SimCLR SavedModel nor a checkpoint; the message says why."""


@dataclasses.dataclass(frozen=True)
class ReferenceWeights:
    """The variables of an original SimCLR model, as read from `path`.

    style: SAVED_MODEL (keys are variable names) or CHECKPOINT (keys are object paths).
    step: the training step (checkpoint: its global_step; SavedModel: its numeric
      directory name; None when unknown).
    """

    path: str
    style: str
    arrays: dict[str, np.ndarray]
    step: int | None


def read_reference(src: str) -> ReferenceWeights:
    """The weights of the SavedModel or checkpoint at `src` (see the module docstring)."""
    if tf.io.gfile.isdir(src):
        if tf.io.gfile.exists(os.path.join(src, "saved_model.pb")):
            return _read_saved_model(src)
        versions = _numeric_subdirs_with_saved_model(src)
        if versions:
            return _read_saved_model(os.path.join(src, str(max(versions))))
        latest = tf.train.latest_checkpoint(src)
        if latest:
            return _read_checkpoint(latest)
        raise ReferenceSourceError("src", src, "holds no saved_model.pb, no <step>/saved_model.pb and no checkpoint")
    if tf.io.gfile.exists(f"{src}.index"):
        return _read_checkpoint(src)
    if not tf.io.gfile.exists(src):
        raise ReferenceSourceError("src", src, "no such file or directory (nor a checkpoint prefix with .index)")
    raise ReferenceSourceError("src", src, "is neither a SavedModel directory nor a checkpoint prefix")


def _numeric_subdirs_with_saved_model(directory: str) -> list[int]:
    steps = []
    for name in tf.io.gfile.listdir(directory):
        name = name.rstrip("/")
        if name.isdigit() and tf.io.gfile.exists(os.path.join(directory, name, "saved_model.pb")):
            steps.append(int(name))
    return steps


def _read_saved_model(path: str) -> ReferenceWeights:
    """The SavedModel's weights, read as data: its object graph names each variable, and the
    checkpoint reader on variables/variables holds the values. Nothing of its graph runs: a
    SavedModel from a bucket or a colleague could hold ops that read or write files."""
    proto = saved_model_pb2.SavedModel()
    try:
        with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
        values = trackable_object_graph_pb2.TrackableObjectGraph()
        values.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    except (DecodeError, tf.errors.OpError, ValueError) as error:
        raise ReferenceSourceError("src", path, f"cannot be read as a SavedModel ({type(error).__name__})") from error
    if not proto.meta_graphs:
        raise ReferenceSourceError("src", path, "SavedModel has no MetaGraph")
    nodes = proto.meta_graphs[0].object_graph_def.nodes
    arrays = {}
    for index, node in enumerate(nodes):
        if node.WhichOneof("kind") != "variable":
            continue
        # A loaded tf.Variable is named "<name>:0"; the original code's names are kept that way.
        name = f"{node.variable.name}:0"
        keys = [a.checkpoint_key for a in values.nodes[index].attributes if a.name == "VARIABLE_VALUE"] \
            if index < len(values.nodes) else []
        if not keys:
            raise ReferenceSourceError("src", path, f"variable {name} has no value in variables/variables")
        if name in arrays:
            raise ReferenceSourceError("src", path, f"has two variables named {name}")
        arrays[name] = reader.get_tensor(keys[0])
    if not arrays:
        raise ReferenceSourceError("src", path, "SavedModel has no variables")
    step = os.path.basename(path.rstrip("/"))
    return ReferenceWeights(path, SAVED_MODEL, arrays, int(step) if step.isdigit() else None)


def load_saved_model(path: str):
    """The original SavedModel loaded to RUN it (output comparison, evaluation of the module):
    this executes its graph, which a SavedModel of unknown origin should not be trusted with."""
    try:
        return tf.saved_model.load(path)
    except Exception as error:  # A broken or foreign SavedModel; TF raises several types.
        raise ReferenceSourceError("src", path, f"cannot be loaded as a SavedModel ({type(error).__name__})") from error


def _read_checkpoint(prefix: str) -> ReferenceWeights:
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as error:
        raise ReferenceSourceError("src", prefix, f"cannot be read as a checkpoint ({error.__class__.__name__})") from error
    arrays, step = {}, None
    for key in reader.get_variable_to_shape_map():
        if key.startswith("global_step/"):
            step = int(reader.get_tensor(key))
        if _NOT_WEIGHTS.search(key):
            continue
        arrays[key.removesuffix(_VALUE_SUFFIX)] = reader.get_tensor(key)
    if step is None:
        match = _CHECKPOINT_NAME.search(prefix)
        step = int(match.group(1)) if match else None
    return ReferenceWeights(prefix, CHECKPOINT, arrays, step)


# Object paths only the original code's model has (ours are flat "model/simclr.S..." keys).
_REFERENCE_KEY = re.compile(r"^model/(resnet_model|_projection_head|supervised_head)/")


def is_reference(src: str) -> bool:
    """Whether `src` (a SavedModel dir, a checkpoint prefix or a dir of checkpoints) holds an
    original SimCLR TF2 model rather than a simclr_tf run or module. Reads only an index."""
    index_prefix = None
    if tf.io.gfile.isdir(src):
        if tf.io.gfile.exists(os.path.join(src, "saved_model.pb")):
            index_prefix = os.path.join(src, "variables", "variables")
        elif versions := _numeric_subdirs_with_saved_model(src):
            index_prefix = os.path.join(src, str(max(versions)), "variables", "variables")
        else:
            index_prefix = tf.train.latest_checkpoint(src)
    elif tf.io.gfile.exists(f"{src}.index"):
        index_prefix = src
    if not index_prefix or not tf.io.gfile.exists(f"{index_prefix}.index"):
        return False
    try:
        return any(_REFERENCE_KEY.match(key) for key, _ in tf.train.list_variables(index_prefix))
    except (tf.errors.OpError, ValueError):
        return False
