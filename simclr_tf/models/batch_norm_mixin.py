"""The batch-norm settings shared by the ResNet, its blocks and the selective-kernel conv."""

from simclr_tf.models.fused_batch_norm import FusedBatchNormalization


class BatchNormMixin:
    """Shared batch-norm settings of the ResNet layers (BN momentum, epsilon, global BN)."""

    def _init_batch_norm(self, batch_norm_momentum, batch_norm_epsilon, global_bn):
        if not 0.0 <= batch_norm_momentum <= 1.0:
            raise ValueError(f"batch_norm_momentum must be in [0, 1], got {batch_norm_momentum!r}")
        if not batch_norm_epsilon > 0:
            raise ValueError(f"batch_norm_epsilon must be > 0, got {batch_norm_epsilon!r}")
        self.batch_norm_momentum = batch_norm_momentum
        self.batch_norm_epsilon = batch_norm_epsilon
        self.global_bn = global_bn

    def _batch_norm(self, name: str, zero_init: bool = False, center: bool = True):
        """A BatchNormalization layer whose name contains 'batch_normalization' (LARS excludes it)."""
        return FusedBatchNormalization(
            momentum=self.batch_norm_momentum,
            epsilon=self.batch_norm_epsilon,
            center=center,
            gamma_initializer="zeros" if zero_init else "ones",
            synchronized=self.global_bn,
            dtype=self.dtype_policy,
            name=f"{name}_batch_normalization",
        )

    def _batch_norm_config(self) -> dict:
        return dict(
            batch_norm_momentum=self.batch_norm_momentum,
            batch_norm_epsilon=self.batch_norm_epsilon,
            global_bn=self.global_bn,
        )
