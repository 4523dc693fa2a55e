"""Heads on top of the representation h: the projection head g(.) and a linear classifier.

Projection head: SimCLR, Chen et al. 2020, arXiv:2002.05709, §4.2.
"""

import keras
from keras import ops

from simclr_tf.models.fused_batch_norm import FusedBatchNormalization

PROJECTION_MODES = ("none", "linear", "nonlinear")


def _dense_initializer() -> keras.initializers.Initializer:
    """RandomNormal(stddev=0.01): the reference's init for every head Dense layer."""
    return keras.initializers.RandomNormal(stddev=0.01)


@keras.saving.register_keras_serializable(package="simclr_tf")
class ProjectionHead(keras.layers.Layer):
    """Projection head g(.) mapping h to z, the space of the contrastive loss.

    g(.) as defined in SimCLR, Chen et al. 2020, arXiv:2002.05709, §2.1.

    Modes, as in the SimCLR TF2 reference:
      "none": z = h.
      "linear": Dense(proj_out_dim, no bias) + BN(no beta).
      "nonlinear" (default): num_proj_layers layers; each middle one is
        Dense(width of its input, no bias) + BN(with beta) + ReLU, the last one
        Dense(proj_out_dim, no bias) + BN(no beta), no ReLU. SimCLR v1 used 2
        layers, v2 uses 3.
    The paper (Section 4.2) finds nonlinear > linear > none, and h better than z
    for downstream tasks; `ft_proj_selector` picks which hidden fine-tuning uses:
    0 is h itself, j >= 1 the output of head layer j (after its ReLU).

    `call(h, training=False)` returns a dict:
      proj_head_input: h.
      proj_head_output: z, float32 (cast, for the loss under mixed precision).
      supervised_head_input: the hidden selected by ft_proj_selector.

    Example:
        head = ProjectionHead(mode="nonlinear", num_proj_layers=2, proj_out_dim=128)
        z = head(h, training=True)["proj_head_output"]  # (batch, 128)
    """

    def __init__(
        self,
        mode: str = "nonlinear",
        num_proj_layers: int = 3,
        proj_out_dim: int = 128,
        ft_proj_selector: int = 0,
        batch_norm_momentum: float = 0.9,
        batch_norm_epsilon: float = 1e-5,
        global_bn: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mode not in PROJECTION_MODES:
            raise ValueError(f"mode must be one of {PROJECTION_MODES}, got {mode!r}")
        if num_proj_layers < 1:
            raise ValueError(f"num_proj_layers must be >= 1, got {num_proj_layers!r}")
        if proj_out_dim < 1:
            raise ValueError(f"proj_out_dim must be >= 1, got {proj_out_dim!r}")
        num_layers = {"none": 0, "linear": 1, "nonlinear": num_proj_layers}[mode]
        if not 0 <= ft_proj_selector <= num_layers:
            raise ValueError(
                f"ft_proj_selector must be in [0, {num_layers}] (the number of layers of a "
                f"{mode!r} head), got {ft_proj_selector!r}"
            )
        if not 0.0 <= batch_norm_momentum <= 1.0:
            raise ValueError(f"batch_norm_momentum must be in [0, 1], got {batch_norm_momentum!r}")
        if not batch_norm_epsilon > 0:
            raise ValueError(f"batch_norm_epsilon must be > 0, got {batch_norm_epsilon!r}")
        self.mode = mode
        self.num_proj_layers = num_proj_layers
        self.proj_out_dim = proj_out_dim
        self.ft_proj_selector = ft_proj_selector
        self.batch_norm_momentum = batch_norm_momentum
        self.batch_norm_epsilon = batch_norm_epsilon
        self.global_bn = global_bn
        self.num_layers = num_layers
        # Middle layers are as wide as h, known in build(); the layers are created there.
        self.dense_layers = []
        self.batch_norm_layers = []

    def build(self, input_shape):
        width = input_shape[-1]
        prefix = "l" if self.mode == "linear" else "nl"
        shape = tuple(input_shape)
        for j in range(self.num_layers):
            is_last = j == self.num_layers - 1
            units = self.proj_out_dim if is_last else width
            dense = keras.layers.Dense(
                units,
                use_bias=False,
                kernel_initializer=_dense_initializer(),
                dtype=self.dtype_policy,
                name=f"{prefix}_{j}_dense",
            )
            bn = FusedBatchNormalization(
                momentum=self.batch_norm_momentum,
                epsilon=self.batch_norm_epsilon,
                center=not is_last,
                synchronized=self.global_bn,
                dtype=self.dtype_policy,
                name=f"{prefix}_{j}_batch_normalization",
            )
            dense.build(shape)
            shape = shape[:-1] + (units,)
            bn.build(shape)
            self.dense_layers.append(dense)
            self.batch_norm_layers.append(bn)

    def call(self, h, training=False):
        hiddens = [h]
        for j, (dense, bn) in enumerate(zip(self.dense_layers, self.batch_norm_layers)):
            x = bn(dense(hiddens[-1]), training=training)
            if j != self.num_layers - 1:
                x = ops.relu(x)
            hiddens.append(x)
        return {
            "proj_head_input": h,
            "proj_head_output": ops.cast(hiddens[-1], "float32"),
            "supervised_head_input": hiddens[self.ft_proj_selector],
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            mode=self.mode,
            num_proj_layers=self.num_proj_layers,
            proj_out_dim=self.proj_out_dim,
            ft_proj_selector=self.ft_proj_selector,
            batch_norm_momentum=self.batch_norm_momentum,
            batch_norm_epsilon=self.batch_norm_epsilon,
            global_bn=self.global_bn,
        )
        return config


@keras.saving.register_keras_serializable(package="simclr_tf")
class SupervisedHead(keras.layers.Layer):
    """Linear classifier on a representation: Dense(num_classes) with bias; float32 logits.

    Used for linear evaluation (on stop_gradient(h) while pretraining, as in
    SimCLR, Chen et al. 2020, arXiv:2002.05709) and fine-tuning. Its name must
    contain "supervised_head" (the default), so its variables can be excluded
    from LARS weight decay by that pattern.
    `zero_init=True` starts the kernel at zero (the reference's
    zero_init_logits_layer); otherwise RandomNormal(stddev=0.01).

    Example:
        head = SupervisedHead(num_classes=10)
        logits_sup = head(h)  # (batch, 10)
    """

    def __init__(self, num_classes: int, zero_init: bool = False, name: str = "supervised_head", **kwargs):
        if "supervised_head" not in name:
            raise ValueError(f"name must contain 'supervised_head' (weight-decay exclusion), got {name!r}")
        super().__init__(name=name, **kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.zero_init = zero_init
        self.dense = keras.layers.Dense(
            num_classes,
            kernel_initializer="zeros" if zero_init else _dense_initializer(),
            dtype=self.dtype_policy,
            name="dense",
        )

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, inputs, training=False):
        return ops.cast(self.dense(inputs), "float32")

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, zero_init=self.zero_init)
        return config
