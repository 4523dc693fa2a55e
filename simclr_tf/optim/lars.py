"""LARS, the layer-wise adaptive-rate optimiser SimCLR trains with at large batch sizes.

You, Gitman & Ginsburg 2017 ("Large Batch Training of Convolutional Networks"),
as implemented in google-research/simclr tf2/lars_optimizer.py, with SimCLR's settings
(Chen et al. 2020, arXiv:2002.05709: momentum 0.9, trust coefficient 0.001).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras
import tensorflow as tf

DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY = ("batch_normalization", "bias")


def _compile_patterns(patterns: Sequence[str], argument: str) -> tuple[re.Pattern, ...]:
    if isinstance(patterns, str):
        raise ValueError(
            f"`{argument}` must be a sequence of regex patterns, not a single string; "
            f"got {patterns!r} (wrap it in a list)."
        )
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except (re.error, TypeError) as error:
            raise ValueError(
                f"`{argument}` holds an invalid regex {pattern!r}: {error}."
            ) from None
    return tuple(compiled)


def _trust_ratio(eeta: float, weight_norm: tf.Tensor, step_norm: tf.Tensor) -> tf.Tensor:
    """eeta * ||w|| / ||step||, or 1.0 where either norm is 0 (as the reference)."""
    return tf.where(
        weight_norm > 0.0,
        tf.where(step_norm > 0.0, eeta * weight_norm / step_norm, 1.0),
        1.0,
    )


@keras.saving.register_keras_serializable(package="simclr_tf")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling with momentum and L2 weight decay.

    Per variable w with gradient g, in float32 whatever the variable and
    gradient dtypes (the momentum slots are float32 too):

        g' = g + weight_decay * w                  (unless excluded from decay)
        trust_ratio = eeta * ||w|| / ||g'||        (1.0 if either norm is 0, or
                                                    if excluded from adaptation)
        classic_momentum=True (default):
            v = momentum * v + lr * trust_ratio * g'
            w -= momentum * v + lr * trust_ratio * g'   if nesterov else v
        classic_momentum=False (trust ratio computed on the momentum step u):
            v = momentum * v + g'
            u = momentum * v + g'                       if nesterov else v
            w -= lr * eeta * ||w|| / ||u|| * u

    Weight decay is coupled (added to the gradient before the trust ratio), as in
    the reference; Keras's decoupled `weight_decay` of the base class is NOT
    applied on top of it (`_apply_weight_decay` is a no-op here). SimCLR's
    weight decay values (1e-6 in SimCLR v1, 1e-4 for CIFAR-10 and in SimCLRv2) assume this coupling
    and the reference loss scale.

    Exclusions are regexes searched (`re.search`) in each Keras variable's
    `.path`, e.g. "simclr/resnet/block_group1/block1/bn_1_batch_normalization/gamma"
    or "simclr/supervised_head/dense/bias"; they are resolved once, in `build`. Name
    your layers so the patterns match: Keras names BatchNormalization layers
    "batch_normalization[_k]" and Dense biases "bias" unless told otherwise
    (`simclr_tf.training.builders.exclusion_counts` refuses a pattern that matches
    nothing, e.g. after a layer was renamed).

    Example (the exclusions simclr_tf uses for a model with a supervised head):
        optimizer = LARS(
            learning_rate=warmup_cosine_schedule(0.3, 4096, "linear", 3_120, 31_200),
            weight_decay=1e-6,
            exclude_from_weight_decay=("batch_normalization", "bias", "supervised_head"),
        )
        optimizer.apply(grads, model.trainable_variables)

    Args:
      learning_rate: float, or a `keras.optimizers.schedules.LearningRateSchedule`.
      momentum: momentum coefficient in [0, 1).
      weight_decay: L2 coefficient added to the gradient, >= 0.
      eeta: trust coefficient, > 0.
      classic_momentum: apply the (trust-scaled) learning rate inside the
        momentum accumulation (True) or after it (False), as the reference.
      nesterov: use Nesterov momentum.
      exclude_from_weight_decay: regexes; matching variables get no weight decay.
      exclude_from_layer_adaptation: regexes; matching variables use trust
        ratio 1.0. None means the same list as `exclude_from_weight_decay`.
      name: optimizer name.
      **kwargs: forwarded to `keras.optimizers.Optimizer` (clipnorm, use_ema,
        ...), except `weight_decay`, which is this optimizer's own (coupled).
    """

    def __init__(
        self,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eeta: float = 0.001,
        classic_momentum: bool = True,
        nesterov: bool = False,
        exclude_from_weight_decay: Sequence[str] = DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY,
        exclude_from_layer_adaptation: Sequence[str] | None = None,
        name: str = "LARS",
        **kwargs,
    ):
        # weight_decay=None: the base class must not apply its decoupled decay.
        super().__init__(learning_rate=learning_rate, weight_decay=None, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1), got {momentum!r}.")
        if weight_decay is None or not weight_decay >= 0.0:
            raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay!r}.")
        if not eeta > 0.0:
            raise ValueError(f"`eeta` must be > 0, got {eeta!r}.")
        if exclude_from_layer_adaptation is None:
            exclude_from_layer_adaptation = exclude_from_weight_decay
        self._weight_decay_exclusions = _compile_patterns(
            exclude_from_weight_decay, "exclude_from_weight_decay"
        )
        self._layer_adaptation_exclusions = _compile_patterns(
            exclude_from_layer_adaptation, "exclude_from_layer_adaptation"
        )
        self.momentum = float(momentum)
        # Our coupled decay; set after super() so the base class sees None.
        self.weight_decay = float(weight_decay)
        self.eeta = float(eeta)
        self.classic_momentum = bool(classic_momentum)
        self.nesterov = bool(nesterov)

    def build(self, variables):
        """Creates one float32 velocity per variable and resolves the exclusions."""
        if self.built:
            return
        super().build(variables)
        self.velocities = []
        self._decays = []
        self._adapts = []
        for variable in variables:
            path = getattr(variable, "path", variable.name)
            self.velocities.append(
                self.add_variable(
                    shape=variable.shape,
                    dtype="float32",
                    name=f"{path.replace('/', '_')}_velocity",
                )
            )
            self._decays.append(
                self.weight_decay > 0.0
                and not any(p.search(path) for p in self._weight_decay_exclusions)
            )
            self._adapts.append(not any(p.search(path) for p in self._layer_adaptation_exclusions))

    def update_step(self, gradient, variable, learning_rate):
        """One LARS step for one variable, computed in float32."""
        index = self._get_variable_index(variable)
        velocity = self.velocities[index]
        weights = tf.cast(variable, tf.float32)
        grad = tf.cast(tf.convert_to_tensor(gradient), tf.float32)
        learning_rate = tf.cast(learning_rate, tf.float32)
        if self._decays[index]:
            grad = grad + self.weight_decay * weights

        if self.classic_momentum:
            scaled_lr = learning_rate
            if self._adapts[index]:
                scaled_lr = learning_rate * _trust_ratio(
                    self.eeta, tf.norm(weights), tf.norm(grad)
                )
            next_velocity = self.momentum * velocity + scaled_lr * grad
            if self.nesterov:
                update = self.momentum * next_velocity + scaled_lr * grad
            else:
                update = next_velocity
        else:
            next_velocity = self.momentum * velocity + grad
            if self.nesterov:
                step = self.momentum * next_velocity + grad
            else:
                step = next_velocity
            scaled_lr = learning_rate
            if self._adapts[index]:
                scaled_lr = learning_rate * _trust_ratio(
                    self.eeta, tf.norm(weights), tf.norm(step)
                )
            update = scaled_lr * step

        self.assign(velocity, next_velocity)
        self.assign(variable, tf.cast(weights - update, variable.dtype))

    def _apply_weight_decay(self, variables):
        """No-op: LARS adds its weight decay to the gradient in `update_step`."""

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Unsupported: pass regexes as the `exclude_from_weight_decay` argument."""
        raise NotImplementedError(
            "LARS takes its exclusions as constructor arguments "
            "`exclude_from_weight_decay` / `exclude_from_layer_adaptation`."
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.weight_decay,
                "eeta": self.eeta,
                "classic_momentum": self.classic_momentum,
                "nesterov": self.nesterov,
                "exclude_from_weight_decay": [p.pattern for p in self._weight_decay_exclusions],
                "exclude_from_layer_adaptation": [
                    p.pattern for p in self._layer_adaptation_exclusions
                ],
            }
        )
        return config
