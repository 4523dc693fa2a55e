"""The exported object: a Keras 3 SimCLR model behind the interface TF-Hub's `hub.KerasLayer`
expects (SPEC §7, §8).

A plain AutoTrackable (not tf.Module, whose `variables` property has no setter) carries
`variables`, `trainable_variables` and `regularization_losses` as attributes, and a
`__call__(images, training=False)` traced for both values of `training`. The variables
are attached as explicit lists: Keras 3 does not put layers held in Python lists into
TensorFlow's object graph, so the model alone would not carry all of its weights.
"""

from __future__ import annotations

import tensorflow as tf

from simclr_tf.models import SimCLRModel

ENCODER_OUTPUTS = ("initial_conv", "initial_max_pool", "block_group1", "block_group2", "block_group3",
                   "block_group4", "final_avg_pool")
HEAD_OUTPUTS = ("proj_head_input", "proj_head_output")
OUTPUT_NAMES = ENCODER_OUTPUTS + HEAD_OUTPUTS + ("logits_sup",)
# serving_default: float32 RGB images in [0, 1], any height and width, NHWC.
SERVING_INPUT = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")


class HubModule(tf.__internal__.tracking.AutoTrackable):
    """`module(images, training=False)` -> dict of named outputs (see OUTPUT_NAMES).

    include_projection_head: also export proj_head_input/proj_head_output.
    freeze_batch_norm: BN always uses its moving statistics, also when a fine-tuning
      caller passes training=True (right for small fine-tuning batches).
    """

    def __init__(self, model: SimCLRModel, *, include_projection_head: bool = True, freeze_batch_norm: bool = False):
        super().__init__()
        self._model = model
        self._keep = ENCODER_OUTPUTS + (HEAD_OUTPUTS if include_projection_head else ()) + (
            ("logits_sup",) if model.supervised_head is not None else ())
        self._freeze_batch_norm = freeze_batch_norm
        exported = [v for v in model.variables if include_projection_head or "/projection_head/" not in f"/{v.path}/"]
        trainable = {id(v) for v in model.trainable_variables}
        self.variables = exported
        self.trainable_variables = [v for v in exported if id(v) in trainable]
        self.regularization_losses = []  # Weight decay belongs to the fine-tuner's optimizer.
        for training in (False, True):
            self.__call__.get_concrete_function(SERVING_INPUT, training=training)
        self.serve = tf.function(lambda images: self.__call__(images, training=False), input_signature=[SERVING_INPUT])

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._keep

    @tf.function
    def __call__(self, images, training=False):
        images = tf.convert_to_tensor(images, tf.float32)
        outputs = self._model(images, training=bool(training) and not self._freeze_batch_norm)
        return {name: tf.identity(outputs[name], name=name) for name in self._keep}
