"""The exported object: a SimCLR model behind the interface TF-Hub's `hub.KerasLayer` expects.

The interface of the original SimCLR SavedModels (google-research/simclr tf2), checked
with TF 2.21 and tensorflow-hub 0.16. A plain AutoTrackable (tf.Module cannot be used: its `variables` property has
no setter) that carries `variables`, `trainable_variables`, `regularization_losses` and
`__call__(images, training=False)` traced for both values of `training`, plus a
`serving_default` function for TF Serving.

Only those attributes are saved. The Keras model is held in a closure, not in an
attribute, so the SavedModel does not depend on Keras 3's object graph (which leaves out
layers held in Python lists, see simclr_tf/training/checkpoints.py); and
`tf.saved_model.save` refuses to write a function that reads a variable missing from
`variables`, so an incomplete variable list cannot be exported silently. The lists hold
the tf.Variables inside the Keras variables, so the variables the SavedModel restores are
the ones its functions read, for every loader (see `_tf_variable`).
"""

from __future__ import annotations

import functools
from typing import Callable

import tensorflow as tf

from simclr_tf.errors import UserError
from simclr_tf.models import ENCODER_OUTPUTS, PROJECTION_OUTPUTS, REPRESENTATION, SUPERVISED_OUTPUT, SimCLRModel

SERVING_SIGNATURE = "serving_default"
# float32 RGB images in [0, 1], NHWC, any batch size, height and width (the encoder is
# convolutional up to the average pool; the training image_size is what it has seen).
SERVING_INPUT = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")


class ExportError(UserError, ValueError):
    """The model cannot be exported with the options asked for; the message names the option."""


def output_names(model: SimCLRModel, include_projection_head: bool) -> tuple[str, ...]:
    """The named outputs a module of `model` returns, in OUTPUT_NAMES order."""
    names = ENCODER_OUTPUTS + (PROJECTION_OUTPUTS if include_projection_head else ())
    return names + ((SUPERVISED_OUTPUT,) if model.supervised_head is not None else ())


def exported_variables(model: SimCLRModel, include_projection_head: bool) -> list[tf.Variable]:
    """The model's variables, without the projection head's when it is left out."""
    left_out = set() if include_projection_head else {id(v) for v in model.projection_head.variables}
    return [v for v in model.variables if id(v) not in left_out]


def _forward(model: SimCLRModel, include_projection_head: bool) -> Callable:
    """images, training -> the model's dict; without the projection head, encoder (+ classifier).

    Leaving the head out of the computation (not just out of the outputs) keeps its
    weights out of the SavedModel. The supervised head then sees h as in the model,
    which is only possible when it reads h (pretraining, or ft_proj_selector=0).
    """
    if include_projection_head:
        return lambda images, training: model(images, training=training)
    head = model.supervised_head
    selector = model.projection_head.ft_proj_selector
    if head is not None and not model.linear_eval_on_stop_gradient and selector > 0:
        raise ExportError(
            f"HubModule.include_projection_head=False: this model's supervised head reads projection-head layer "
            f"{selector} (ModelConfig.ft_proj_selector={selector}), so logits_sup needs the projection head; "
            f"export with it"
        )

    def forward(images, training):
        outputs = dict(model.encoder(images, training=training))
        if head is not None:
            h = outputs[REPRESENTATION]
            h = tf.stop_gradient(h) if model.linear_eval_on_stop_gradient else h
            outputs[SUPERVISED_OUTPUT] = head(h, training=training)
        return outputs

    return forward


def _named_outputs(forward: Callable, names: tuple[str, ...], freeze_batch_norm: bool, images, training: bool):
    images = tf.convert_to_tensor(images, tf.float32)
    outputs = forward(images, training and not freeze_batch_norm)
    # float32 whatever the training precision: one documented dtype for every output.
    return {name: tf.identity(tf.cast(outputs[name], tf.float32), name=name) for name in names}


class HubModule(tf.__internal__.tracking.AutoTrackable):
    """`module(images, training=False)` -> {name: float32 tensor}, as saved for TF-Hub / TF Serving.

    Args:
      model: a built SimCLRModel (its current weights are exported).
      include_projection_head: also compute and export proj_head_input / proj_head_output.
        Without it the projection head's weights are not in the module at all.
      freeze_batch_norm: BN always uses its moving statistics, also when a fine-tuning
        caller passes training=True (hub.KerasLayer(trainable=True) does), and never
        updates them - right for small fine-tuning batches. Gamma and beta still train.

    `regularization_losses` is empty: weight decay belongs to the fine-tuner's optimizer.

    Example:
        module = HubModule(model, include_projection_head=False)
        tf.saved_model.save(module, path, signatures={SERVING_SIGNATURE: module.serve})
    """

    def __init__(self, model: SimCLRModel, *, include_projection_head: bool = True, freeze_batch_norm: bool = False):
        super().__init__()
        names = output_names(model, include_projection_head)
        # A partial is not trackable: the Keras model stays out of the saved object graph.
        self._outputs = functools.partial(_named_outputs, _forward(model, include_projection_head), names,
                                          freeze_batch_norm)
        exported = exported_variables(model, include_projection_head)
        trainable = {id(v) for v in model.trainable_variables}
        self.variables = [_tf_variable(v) for v in exported]
        self.trainable_variables = [_tf_variable(v) for v in exported if id(v) in trainable]
        self.regularization_losses = []
        for training in (False, True):
            self.__call__.get_concrete_function(SERVING_INPUT, training=training)
        self.serve = tf.function(lambda images: self._outputs(images, False), input_signature=[SERVING_INPUT])

    @tf.function
    def __call__(self, images, training=False):
        return self._outputs(images, bool(training))


def _tf_variable(variable) -> tf.Variable:
    """The tf.Variable that holds a Keras 3 variable's value, which is what traced functions read.

    Saving a Keras 3 variable itself writes a *copy* (keras' `_export_to_saved_model_graph`
    makes a new tf.Variable from the inner one), so the checkpoint would restore the copy
    while every function reads the inner handle. tf.saved_model.load re-binds captures to
    Python objects and hides this; TF Serving, saved_model_cli, the C++ / TF1 session loader
    and the TFLite converter read the graph as written and find those handles unrestored
    ("Could not find variable ...", or NaN outputs after TFLite conversion).
    """
    value = variable.value
    if not isinstance(value, tf.Variable):
        raise TypeError(f"{variable.path}: expected a tf.Variable behind the Keras variable, got {type(value)}")
    return value
