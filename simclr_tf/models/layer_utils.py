"""Helpers of the composite layers: argument checks, and building sub-layers by a symbolic call."""

from typing import Any

import keras


def trace_build(layer: keras.layers.Layer, input_shape) -> None:
    """Creates the variables of `layer`'s sub-layers by calling it on a symbolic input.

    Used by `build()` of composite layers, so that `layer.build(shape)` and
    loading a saved `.keras` file create every variable before any real call.
    """
    layer.call(keras.KerasTensor(tuple(input_shape), dtype="float32"), training=False)


def check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_ratio(name: str, value: Any) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
