"""Frozen encoders (a run's checkpoint or an exported module) and their features on a split.

Both kinds of encoder present the same interface, so every protocol (linear
evaluation, kNN, transfer) runs unchanged on a checkpoint or on a SavedModel /
TF-Hub module, and a test can check that both give the same numbers.

Features can be cached on disk (`cache_dir`): a sweep over classifier settings
then runs the encoder once per split. The cache key holds everything the features
depend on: the encoder's weights (checkpoint index or saved_model.pb digest), the
output, the dataset and split, the image size and the example cap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from typing import Callable

import numpy as np
import tensorflow as tf

from simclr_tf.data import Source, SourceConfig, build_source
from simclr_tf.errors import EvaluationError, PathError
from simclr_tf.evaluation.predict import predict
from simclr_tf.models import REPRESENTATION, SimCLRModel
from simclr_tf.run_dir import RunDir
from simclr_tf.training.checkpoints import model_from_run

# h, the representation the paper evaluates (SimCLR §4.2: better than the head's output z).
DEFAULT_OUTPUT = REPRESENTATION


@dataclasses.dataclass(frozen=True)
class FrozenEncoder:
    """images float32 [B, H, W, 3] in [0, 1] -> {output name: features}, in inference mode.

    `identity` names the weights (for caches and result files); `image_size` is the
    side the encoder was trained at, which evaluation uses unless told otherwise.
    """

    describe: str
    identity: str
    image_size: int
    outputs: Callable[[tf.Tensor], dict[str, tf.Tensor]]
    output_names: tuple[str, ...]


def _digest(path: str) -> str:
    with tf.io.gfile.GFile(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def encoder_features(strategy: tf.distribute.Strategy, model: SimCLRModel, source: Source, *, image_size: int,
                     global_batch_size: int, max_steps: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """h (final_avg_pool) and labels of `source` (its first `max_steps` global batches when > 0),
    by an in-memory model under `strategy` (evaluation of a run, the kNN monitor)."""
    outputs, labels = predict(
        strategy, lambda images: {DEFAULT_OUTPUT: model(images, training=False)[DEFAULT_OUTPUT]}, source,
        image_size=image_size, global_batch_size=global_batch_size, max_steps=max_steps,
    )
    return outputs[DEFAULT_OUTPUT], labels


def encoder_from_checkpoint(run: RunDir, checkpoint: str | None = None) -> FrozenEncoder:
    """The run's model with the weights of `checkpoint` (default: the run's newest)."""
    model, path = model_from_run(run, checkpoint)
    outputs = tf.function(lambda images: model(images, training=False))
    image_size = run.config.augment.image_size
    names = tuple(outputs(tf.zeros([2, image_size, image_size, 3])).keys())
    return FrozenEncoder(
        describe=f"checkpoint {path}", identity=f"{path}@{_digest(path + '.index')}",
        image_size=image_size, outputs=outputs, output_names=names,
    )


def encoder_from_module(path: str, image_size: int) -> FrozenEncoder:
    """An exported SavedModel / TF-Hub module (tf_hub_export): `module(images, training=False)`."""
    saved_model_pb = os.path.join(path, "saved_model.pb")
    if not tf.io.gfile.exists(saved_model_pb):
        raise PathError("module", path, "no saved_model.pb (not an exported module?)")
    if image_size < 1:
        raise EvaluationError(f"image_size must be set (> 0) for the module {path}: a module does not record it")
    module = tf.saved_model.load(path)
    # Positionally: ours is __call__(images, training), the original SimCLR modules' (published
    # v1/v2 TF2 models) __call__(inputs, trainable); both return the dict of named outputs.
    outputs = tf.function(lambda images: module(images, False))
    probe = module(tf.zeros([1, image_size, image_size, 3]), False)
    if not isinstance(probe, dict):
        raise PathError("module", path, f"returns {type(probe).__name__}, not a dict of named outputs")
    names = tuple(probe)
    variables_digest = _digest(os.path.join(path, "variables", "variables.index"))
    return FrozenEncoder(
        describe=f"module {path}", identity=f"{os.path.abspath(path)}@{variables_digest}",
        image_size=image_size, outputs=outputs, output_names=names,
    )


def load_encoder(model_dir: str | None, checkpoint: str | None, module: str | None, image_size: int):
    """The encoder named by a run (`model_dir`, `checkpoint`) or a `module`, and the dataset the
    run trained on (None for a module)."""
    if bool(model_dir) == bool(module):
        raise EvaluationError("give exactly one of model_dir (a run's checkpoint) and module (an exported module)")
    if module:
        return encoder_from_module(module, image_size), None
    run = RunDir.open(model_dir)
    return encoder_from_checkpoint(run, checkpoint), run.config.source.dataset


def encode(
    encoder: FrozenEncoder,
    source: Source,
    *,
    output: str = DEFAULT_OUTPUT,
    image_size: int = 0,
    batch_size: int = 256,
    max_examples: int = 0,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Features [N, D] (spatial outputs are average-pooled) and labels [N] of a labelled split."""
    if output not in encoder.output_names:
        raise EvaluationError(f"EvalTask.output={output}: {encoder.describe} has outputs {', '.join(encoder.output_names)}")
    strategy = strategy or tf.distribute.get_strategy()
    steps = -(-max_examples // batch_size) if max_examples else 0

    def features(images):
        value = encoder.outputs(images)[output]
        return {output: tf.reduce_mean(value, axis=[1, 2]) if value.shape.rank == 4 else value}

    values, labels = predict(strategy, features, source, image_size=image_size or encoder.image_size,
                             global_batch_size=batch_size, max_steps=steps)
    features_array = values[output].astype(np.float32)
    if max_examples:
        features_array, labels = features_array[:max_examples], labels[:max_examples]
    return features_array, labels.astype(np.int64)


def cached_encode(
    encoder: FrozenEncoder,
    source_config: SourceConfig,
    *,
    cache_dir: str | None,
    output: str = DEFAULT_OUTPUT,
    image_size: int = 0,
    batch_size: int = 256,
    max_examples: int = 0,
    printer: Callable[[str], None] = print,
) -> tuple[np.ndarray, np.ndarray, Source]:
    """`encode` on the split `source_config` names, read from / written to `cache_dir` when given."""
    source = build_source(source_config)
    image_size = image_size or encoder.image_size
    key = json.dumps({"encoder": encoder.identity, "output": output, "dataset": source_config.dataset,
                      "split": source_config.split, "data_dir": source_config.data_dir, "image_size": image_size,
                      "max_examples": max_examples, "num_examples": source.num_examples}, sort_keys=True)
    path = None
    if cache_dir:
        name = hashlib.sha256(key.encode()).hexdigest()[:20]
        path = os.path.join(cache_dir, f"features-{name}.npz")
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path, "rb") as f:
                stored = np.load(io.BytesIO(f.read()))
                if str(stored["key"]) == key:
                    printer(f"features of {source.name}:{source_config.split} from cache {path}")
                    return stored["features"], stored["labels"], source
    features, labels = encode(encoder, source, output=output, image_size=image_size, batch_size=batch_size,
                              max_examples=max_examples)
    if path:
        buffer = io.BytesIO()
        np.savez(buffer, features=features, labels=labels, key=np.array(key))
        tf.io.gfile.makedirs(cache_dir)
        temporary = f"{path}.tmp-{os.getpid()}"
        with tf.io.gfile.GFile(temporary, "wb") as f:
            f.write(buffer.getvalue())
        tf.io.gfile.rename(temporary, path, overwrite=True)
        printer(f"features of {source.name}:{source_config.split} cached in {path}")
    return features, labels, source

