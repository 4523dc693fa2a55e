"""SimCLR network: encoder f(.) + projection head g(.) + optional linear classifier."""

import keras
from keras import ops

from simclr_tf.models.heads import ProjectionHead, SupervisedHead
from simclr_tf.models.layer_utils import trace_build
from simclr_tf.models.resnet import OUTPUT_NAMES as ENCODER_OUTPUTS

# The named outputs, in order: what export, evaluation and transfer read, the names of the
# original SimCLR SavedModels. h = final_avg_pool is the representation (SimCLR §4.2).
REPRESENTATION = "final_avg_pool"
PROJECTION_OUTPUTS = ("proj_head_input", "proj_head_output")
SUPERVISED_OUTPUT = "logits_sup"
OUTPUT_NAMES = ENCODER_OUTPUTS + PROJECTION_OUTPUTS + (SUPERVISED_OUTPUT,)


@keras.saving.register_keras_serializable(package="simclr_tf")
class SimCLRModel(keras.Model):
    """Encoder + projection head (+ supervised head), returning one flat dict of named tensors.

    `call(images, training=False)` returns every encoder output (initial_conv,
    ..., block_group4, final_avg_pool = h), proj_head_input (= h),
    proj_head_output (= z, float32) and, with a supervised head, logits_sup
    (float32) - the tensors the reference's SavedModel exports (the models
    released with SimCLR, Chen et al. 2020, arXiv:2002.05709).

    The supervised head's input depends on `linear_eval_on_stop_gradient`:
      True (pretraining with online linear evaluation, as in SimCLR, Chen et
        al. 2020, arXiv:2002.05709): it sees stop_gradient(h), so no label
        information reaches the encoder.
      False (fine-tuning): it sees the projection head's hidden chosen by
        `ft_proj_selector` (0 = h), and gradients flow into the encoder.
    (The reference applies the stop-gradient to the ft_proj_selector hidden;
    with the default selector 0 both are h.)

    The encoder can be any layer whose call returns a dict with "final_avg_pool".

    Example:
        model = SimCLRModel(
            encoder=ResNet(depth=18, cifar_stem=True),
            projection_head=ProjectionHead(num_proj_layers=2),
            supervised_head=SupervisedHead(num_classes=10),
        )
        outputs = model(views, training=True)
        z, logits = outputs["proj_head_output"], outputs["logits_sup"]
    """

    def __init__(
        self,
        encoder: keras.layers.Layer,
        projection_head: ProjectionHead,
        supervised_head: SupervisedHead | None = None,
        linear_eval_on_stop_gradient: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.projection_head = projection_head
        self.supervised_head = supervised_head
        self.linear_eval_on_stop_gradient = linear_eval_on_stop_gradient

    def build(self, input_shape):
        trace_build(self, input_shape)

    def call(self, images, training=False):
        outputs = dict(self.encoder(images, training=training))
        h = outputs["final_avg_pool"]
        head_outputs = self.projection_head(h, training=training)
        outputs["proj_head_input"] = h  # The encoder's tensor (float32), not the head's autocast copy.
        outputs["proj_head_output"] = head_outputs["proj_head_output"]
        if self.supervised_head is not None:
            if self.linear_eval_on_stop_gradient:
                supervised_input = ops.stop_gradient(h)
            else:
                supervised_input = head_outputs["supervised_head_input"]
            outputs["logits_sup"] = self.supervised_head(supervised_input, training=training)
        return outputs

    def get_config(self):
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update(
            encoder=serialize(self.encoder),
            projection_head=serialize(self.projection_head),
            supervised_head=None if self.supervised_head is None else serialize(self.supervised_head),
            linear_eval_on_stop_gradient=self.linear_eval_on_stop_gradient,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "projection_head", "supervised_head"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
