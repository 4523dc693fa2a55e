"""Checks that an exported module works the ways users load it (library side of `verify`).

A module can save fine and still fail its users: hub.KerasLayer needs `training` and the
variable lists, TF Serving needs the signature and every variable its graph reads restored
(its session loader, unlike tf.saved_model.load, does not re-bind a function's captures),
and a wrong variable list or BN mode gives plausible but wrong features. So the module is
loaded three ways (tf.saved_model.load, hub.KerasLayer, the TF1/TF Serving session loader),
run on one batch, and (given the model it came from) compared output by output.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from simclr_tf.errors import UserError
from simclr_tf.models import OUTPUT_NAMES, REPRESENTATION
from tf_hub_export.module import SERVING_SIGNATURE


class VerificationError(UserError):
    """The module cannot be loaded or disagrees with itself or its model; the message says how."""


@dataclasses.dataclass(frozen=True)
class Output:
    name: str
    shape: tuple[int, ...]
    dtype: str
    max_abs_diff: float | None  # To the reference model; None without one.


def verify(path: str, images: np.ndarray, *, reference=None, tolerance: float = 1e-5) -> list[Output]:
    """Loads `path` with tf.saved_model.load and hub.KerasLayer, runs `images`; returns the outputs.

    `reference`: the in-memory model (training=False) every output must match within
    `tolerance`. Raises VerificationError on the first problem.
    """
    module = _load(path)
    outputs = _call(module, images, path)
    _check_serving(module, images, outputs, path, tolerance)
    _check_session_loader(path, images, outputs, tolerance)
    _check_hub_keras_layer(path, images, outputs, tolerance)
    expected = reference(images, training=False) if reference is not None else None
    table = []
    for name, value in outputs.items():
        diff = None
        if expected is not None:
            if name not in expected:
                raise VerificationError(f"{path}: output {name} is not one of the model's ({', '.join(expected)})")
            diff = float(np.max(np.abs(np.asarray(expected[name], np.float64) - value.astype(np.float64))))
        table.append(Output(name, tuple(value.shape), value.dtype.name, diff))
    worst = max((o.max_abs_diff for o in table if o.max_abs_diff is not None), default=0.0)
    if worst > tolerance:
        names = [o.name for o in table if o.max_abs_diff > tolerance]
        raise VerificationError(f"{path}: outputs differ from the checkpoint's model by up to {worst:.3g} > "
                                f"{tolerance:g} ({', '.join(names)}); the wrong checkpoint, or a broken export")
    _call(module, images, path, training=True)  # Fine-tuners call it so; it must be traced.
    return table


def _load(path: str):
    if not tf.saved_model.contains_saved_model(path):
        raise VerificationError(f"{path}: no SavedModel here (expected {path}/saved_model.pb)")
    try:
        return tf.saved_model.load(path)
    except Exception as error:  # noqa: BLE001 - any load failure means an unusable module.
        raise VerificationError(f"{path}: tf.saved_model.load failed: {_short(error)}") from error


def _call(module, images: np.ndarray, path: str, training: bool = False) -> dict[str, np.ndarray]:
    try:
        outputs = module(tf.constant(images), training=training)
    except Exception as error:  # noqa: BLE001
        raise VerificationError(f"{path}: module(images, training={training}) failed: {_short(error)}") from error
    if not isinstance(outputs, dict) or REPRESENTATION not in outputs:
        raise VerificationError(f"{path}: module(images) must return a dict with {REPRESENTATION}, got {type(outputs)}")
    unknown = sorted(set(outputs) - set(OUTPUT_NAMES))
    if unknown:
        raise VerificationError(f"{path}: unknown outputs {unknown}")
    return {name: outputs[name].numpy() for name in OUTPUT_NAMES if name in outputs}


def _check_serving(module, images, outputs, path, tolerance) -> None:
    if SERVING_SIGNATURE not in module.signatures:
        raise VerificationError(f"{path}: no {SERVING_SIGNATURE} signature (TF Serving needs it)")
    served = module.signatures[SERVING_SIGNATURE](images=tf.constant(images))
    if sorted(served) != sorted(outputs):
        raise VerificationError(f"{path}: {SERVING_SIGNATURE} returns {sorted(served)}, __call__ {sorted(outputs)}")
    for name, value in outputs.items():
        if not np.allclose(served[name].numpy(), value, rtol=0, atol=tolerance):
            raise VerificationError(f"{path}: {SERVING_SIGNATURE}'s {name} differs from __call__'s")


def session_run(path: str, images: np.ndarray) -> dict[str, np.ndarray]:
    """serving_default run as TF Serving and saved_model_cli run it: a TF1 session on a fresh graph.

    Only the SavedModel's own restore op gives the variables their values here, so a module
    whose functions read variables that the SavedModel does not restore fails (or reads
    garbage), while tf.saved_model.load would hide it.
    """
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, [tf.saved_model.SERVING], path)
        signature = meta_graph.signature_def[SERVING_SIGNATURE]
        fetches = {name: info.name for name, info in signature.outputs.items()}
        (images_input,) = signature.inputs.values()
        return session.run(fetches, {images_input.name: images})


def _check_session_loader(path, images, outputs, tolerance) -> None:
    try:
        served = session_run(path, images)
    except Exception as error:  # noqa: BLE001
        raise VerificationError(f"{path}: the session loader (TF Serving, saved_model_cli run) fails on "
                                f"{SERVING_SIGNATURE}: {_short(error)}") from error
    for name, value in outputs.items():
        if name not in served or not np.allclose(served[name], value, rtol=0, atol=tolerance):
            raise VerificationError(f"{path}: the session loader's {name} differs from tf.saved_model.load's "
                                    f"(TF Serving would serve other values)")


def _check_hub_keras_layer(path, images, outputs, tolerance) -> None:
    import tensorflow_hub as hub  # Only here: the rest of the package does not need it.

    try:
        layer = hub.KerasLayer(path, trainable=True, output_key=REPRESENTATION)
        features = layer(tf.constant(images), training=False).numpy()
    except Exception as error:  # noqa: BLE001
        raise VerificationError(f"{path}: hub.KerasLayer(trainable=True) failed: {_short(error)}") from error
    if not layer.trainable_weights:
        raise VerificationError(f"{path}: hub.KerasLayer(trainable=True) finds no trainable weights")
    if not np.allclose(features, outputs[REPRESENTATION], rtol=0, atol=tolerance):
        raise VerificationError(f"{path}: hub.KerasLayer's {REPRESENTATION} differs from __call__'s")


def _short(error: Exception) -> str:
    return " ".join(str(error).split())[:300]
