"""LARS against a NumPy re-implementation of You et al. 2017 / the reference tf2 code."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_tf.optim import LARS, warmup_cosine_schedule

NUM_STEPS = 3
# Large enough that weight decay, trust ratio and momentum each move the
# weights far more than the 1e-6 relative tolerance.
LEARNING_RATE = 0.1
WEIGHT_DECAY = 0.1
EETA = 0.05
MOMENTUM = 0.9
# The reference exclusions, written here rather than imported from the optimizer.
EXCLUDED = ["batch_normalization", "bias"]


def _tiny_model() -> keras.Model:
    """Dense(+bias) -> BatchNormalization -> Dense(zero kernel, no bias): real Keras paths."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="dense")(inputs)
    hidden = keras.layers.BatchNormalization(name="batch_normalization")(hidden)
    outputs = keras.layers.Dense(2, use_bias=False, kernel_initializer="zeros", name="zero")(hidden)
    return keras.Model(inputs, outputs, name="tiny")


def _gradients(variables, num_steps=NUM_STEPS, seed=1):
    """Random float32 gradients per step; the zero-init kernel's are zero at step 0.

    With weight decay on, g' = wd * 0 = 0 too, so step 0 hits ||w|| = ||g'|| = 0.
    """
    rng = np.random.default_rng(seed)
    steps = []
    for step in range(num_steps):
        grads = []
        for v in variables:
            g = rng.normal(size=v.shape).astype(np.float32)
            if v.path.endswith("zero/kernel") and step == 0:
                g = np.zeros_like(g)
            grads.append(g)
        steps.append(grads)
    return steps


def _numpy_lars(weights, grads_per_step, lrs, decays, adapts, *, momentum, weight_decay,
                eeta, classic_momentum, nesterov):
    """The reference update, in float64, written out independently of the optimizer."""
    weights = [np.asarray(w, np.float64).copy() for w in weights]
    velocities = [np.zeros_like(w) for w in weights]
    for grads, lr in zip(grads_per_step, lrs):
        for i, (w, g) in enumerate(zip(weights, grads)):
            g = np.asarray(g, np.float64)
            if decays[i] and weight_decay:
                g = g + weight_decay * w
            v = velocities[i]

            def trust(step_direction):
                w_norm, s_norm = np.linalg.norm(w), np.linalg.norm(step_direction)
                if not adapts[i] or w_norm == 0 or s_norm == 0:
                    return 1.0
                return eeta * w_norm / s_norm

            if classic_momentum:
                scaled_lr = lr * trust(g)
                v = momentum * v + scaled_lr * g
                update = momentum * v + scaled_lr * g if nesterov else v
            else:
                v = momentum * v + g
                step_direction = momentum * v + g if nesterov else v
                update = lr * trust(step_direction) * step_direction
            velocities[i] = v
            weights[i] = w - update
    return weights, velocities


def _assert_close(actual, expected, rtol=1e-6, name=""):
    """Relative to the tensor's norm: element-wise rtol breaks where float32 sums cancel."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    error = np.linalg.norm(actual - expected)
    assert error <= rtol * np.linalg.norm(expected) + 1e-12, (name, error, actual, expected)


def _flags(variables, decay_patterns, adapt_patterns):
    """Which variables get weight decay / layer adaptation, decided in the test."""
    decays = [not any(re.search(p, v.path) for p in decay_patterns) for v in variables]
    adapts = [not any(re.search(p, v.path) for p in adapt_patterns) for v in variables]
    return decays, adapts


def test_default_exclusions_match_real_keras_paths():
    variables = _tiny_model().trainable_variables
    paths = [v.path for v in variables]
    assert paths == [
        "dense/kernel",
        "dense/bias",
        "batch_normalization/gamma",
        "batch_normalization/beta",
        "zero/kernel",
    ]
    optimizer = LARS(LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    optimizer.build(variables)
    assert optimizer._decays == [True, False, False, False, True]
    assert optimizer._adapts == [True, False, False, False, True]


@pytest.mark.parametrize("classic_momentum", [True, False])
@pytest.mark.parametrize("nesterov", [False, True])
def test_three_steps_match_numpy(classic_momentum, nesterov):
    variables = _tiny_model().trainable_variables
    initial = [v.numpy() for v in variables]
    grads_per_step = _gradients(variables)
    optimizer = LARS(
        LEARNING_RATE,
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
        eeta=EETA,
        classic_momentum=classic_momentum,
        nesterov=nesterov,
    )
    for grads in grads_per_step:
        optimizer.apply([tf.constant(g) for g in grads], variables)

    decays, adapts = _flags(variables, EXCLUDED, EXCLUDED)
    expected_weights, expected_velocities = _numpy_lars(
        initial, grads_per_step, [LEARNING_RATE] * NUM_STEPS, decays, adapts,
        momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, eeta=EETA,
        classic_momentum=classic_momentum, nesterov=nesterov,
    )
    for v, expected in zip(variables, expected_weights):
        _assert_close(v.numpy(), expected, name=v.path)
    for velocity, expected in zip(optimizer.velocities, expected_velocities):
        _assert_close(velocity.numpy(), expected, name=velocity.path)
    assert int(optimizer.iterations.numpy()) == NUM_STEPS


def test_separate_layer_adaptation_exclusions_and_zero_gradient():
    """Decay excluded but adaptation kept: a zero gradient gives trust ratio 1.0."""
    variables = _tiny_model().trainable_variables
    initial = [v.numpy() for v in variables]
    grads_per_step = _gradients(variables)
    for grads in grads_per_step:  # the first kernel never gets a gradient
        grads[0] = np.zeros_like(grads[0])
    decay_patterns, adapt_patterns = ["dense/", "batch_normalization", "bias"], ["beta"]
    optimizer = LARS(
        LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, eeta=EETA,
        exclude_from_weight_decay=decay_patterns, exclude_from_layer_adaptation=adapt_patterns,
    )
    for grads in grads_per_step:
        optimizer.apply([tf.constant(g) for g in grads], variables)
    decays, adapts = _flags(variables, decay_patterns, adapt_patterns)
    assert decays == [False, False, False, False, True]
    assert adapts == [True, True, True, False, True]
    expected_weights, _ = _numpy_lars(
        initial, grads_per_step, [LEARNING_RATE] * NUM_STEPS, decays, adapts,
        momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, eeta=EETA,
        classic_momentum=True, nesterov=False,
    )
    for v, expected in zip(variables, expected_weights):
        _assert_close(v.numpy(), expected, name=v.path)
    np.testing.assert_array_equal(variables[0].numpy(), initial[0])


def test_one_step_under_tf_function():
    variables = _tiny_model().trainable_variables
    initial = [v.numpy() for v in variables]
    grads = _gradients(variables, num_steps=1, seed=2)[0]
    grads[-1] = np.ones_like(grads[-1])  # zero weights, nonzero gradient
    optimizer = LARS(LEARNING_RATE, weight_decay=WEIGHT_DECAY, eeta=EETA, nesterov=True)
    optimizer.build(variables)

    @tf.function
    def train_step(grads):
        optimizer.apply(grads, variables)

    train_step([tf.constant(g) for g in grads])
    decays, adapts = _flags(variables, EXCLUDED, EXCLUDED)
    expected_weights, _ = _numpy_lars(
        initial, [grads], [LEARNING_RATE], decays, adapts, momentum=0.9,
        weight_decay=WEIGHT_DECAY, eeta=EETA, classic_momentum=True, nesterov=True,
    )
    for v, expected in zip(variables, expected_weights):
        _assert_close(v.numpy(), expected, name=v.path)


def test_follows_learning_rate_schedule():
    """The per-step lr is schedule(iterations): warmup 0 -> S over 2 steps, then cosine."""
    variables = _tiny_model().trainable_variables
    initial = [v.numpy() for v in variables]
    grads_per_step = _gradients(variables, num_steps=4)
    schedule = warmup_cosine_schedule(1.0, 256, "linear", warmup_steps=2, total_steps=6)
    lrs = [0.0, 0.5, 1.0, 0.5 * (1 + np.cos(np.pi / 4))]
    optimizer = LARS(schedule, weight_decay=WEIGHT_DECAY, eeta=EETA)
    for grads in grads_per_step:
        optimizer.apply([tf.constant(g) for g in grads], variables)
    decays, adapts = _flags(variables, EXCLUDED, EXCLUDED)
    expected_weights, _ = _numpy_lars(
        initial, grads_per_step, lrs, decays, adapts, momentum=0.9,
        weight_decay=WEIGHT_DECAY, eeta=EETA, classic_momentum=True, nesterov=False,
    )
    for v, expected in zip(variables, expected_weights):
        _assert_close(v.numpy(), expected, name=v.path)


def test_base_class_decoupled_weight_decay_is_off():
    """Zero gradient, no momentum history: only the coupled decay can move the kernel."""
    kernel = keras.Variable(np.full((2, 2), 2.0, np.float32), name="kernel")
    optimizer = LARS(0.1, weight_decay=0.5, eeta=1.0)
    optimizer.apply([tf.zeros((2, 2))], [kernel])
    # g' = 0.5 * w = 1; trust = 1 * ||w|| / ||g'|| = 2; update = 0.1 * 2 * 1 = 0.2, once.
    np.testing.assert_allclose(kernel.numpy(), np.full((2, 2), 1.8), rtol=1e-6)
    assert optimizer.get_config()["weight_decay"] == 0.5


@pytest.fixture
def mixed_bfloat16_policy():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def test_mixed_bfloat16_runs_in_float32(mixed_bfloat16_policy):
    variables = _tiny_model().trainable_variables
    assert all(v.dtype == "float32" for v in variables)
    initial = [v.numpy() for v in variables]
    grads_per_step = _gradients(variables)
    bf16_grads = [[tf.cast(g, tf.bfloat16) for g in grads] for grads in grads_per_step]
    optimizer = LARS(LEARNING_RATE, weight_decay=WEIGHT_DECAY, eeta=EETA)
    for grads in bf16_grads:
        optimizer.apply(grads, variables)
    assert all(v.dtype == "float32" for v in optimizer.velocities)

    # Oracle on the bf16-rounded gradients: equal to float32 precision...
    rounded = [[g.numpy().astype(np.float32) for g in grads] for grads in bf16_grads]
    decays, adapts = _flags(variables, EXCLUDED, EXCLUDED)
    oracle = dict(momentum=0.9, weight_decay=WEIGHT_DECAY, eeta=EETA,
                  classic_momentum=True, nesterov=False)
    lrs = [LEARNING_RATE] * NUM_STEPS
    expected, _ = _numpy_lars(initial, rounded, lrs, decays, adapts, **oracle)
    for v, e in zip(variables, expected):
        _assert_close(v.numpy(), e, name=v.path)
    # ...and to the float32-gradient run to bf16-gradient precision.
    exact, _ = _numpy_lars(initial, grads_per_step, lrs, decays, adapts, **oracle)
    for v, e in zip(variables, exact):
        _assert_close(v.numpy(), e, rtol=1e-2, name=v.path)


def test_bfloat16_variable_gets_float32_slot_and_math():
    weights = np.linspace(-1.0, 1.0, 6, dtype=np.float32).reshape(2, 3)
    kernel = keras.Variable(weights, dtype="bfloat16", name="kernel")
    grad = np.linspace(0.5, -0.25, 6, dtype=np.float32).reshape(2, 3)
    optimizer = LARS(LEARNING_RATE, weight_decay=WEIGHT_DECAY, eeta=EETA)
    optimizer.apply([tf.constant(grad, tf.bfloat16)], [kernel])
    assert optimizer.velocities[0].dtype == "float32"
    w0 = tf.cast(tf.cast(weights, tf.bfloat16), tf.float32).numpy()
    g0 = tf.cast(tf.cast(grad, tf.bfloat16), tf.float32).numpy()
    (expected,), (expected_velocity,) = _numpy_lars(
        [w0], [[g0]], [LEARNING_RATE], [True], [True], momentum=0.9,
        weight_decay=WEIGHT_DECAY, eeta=EETA, classic_momentum=True, nesterov=False,
    )
    _assert_close(optimizer.velocities[0].numpy(), expected_velocity)
    np.testing.assert_array_equal(
        kernel.numpy().astype(np.float32),
        tf.cast(tf.cast(expected, tf.float32), tf.bfloat16).numpy().astype(np.float32),
    )


def test_get_config_round_trips():
    optimizer = LARS(
        0.3, momentum=0.8, weight_decay=1e-6, eeta=0.002, classic_momentum=False, nesterov=True,
        exclude_from_weight_decay=["batch_normalization", "bias", "head_supervised"],
        clipnorm=1.0,
    )
    config = optimizer.get_config()
    # None resolves to the weight-decay list, as in the reference.
    assert config["exclude_from_layer_adaptation"] == config["exclude_from_weight_decay"]
    restored = LARS.from_config(config)
    assert restored.get_config() == config
    assert restored.clipnorm == 1.0

    scheduled = LARS(warmup_cosine_schedule(0.075, 4096, "sqrt", 10, 100), weight_decay=1e-6)
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(scheduled))
    assert isinstance(revived, LARS)
    assert revived.get_config() == scheduled.get_config()


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(momentum=-0.1), "momentum"),
        (dict(momentum=1.0), "momentum"),
        (dict(eeta=0.0), "eeta"),
        (dict(eeta=-1e-3), "eeta"),
        (dict(weight_decay=-1e-6), "weight_decay"),
        (dict(weight_decay=None), "weight_decay"),
        (dict(exclude_from_weight_decay=["bias", "("]), "exclude_from_weight_decay"),
        (dict(exclude_from_weight_decay="bias"), "exclude_from_weight_decay"),
        (dict(exclude_from_layer_adaptation=["[unclosed"]), "exclude_from_layer_adaptation"),
    ],
)
def test_invalid_arguments_are_named(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        LARS(0.1, **kwargs)


def test_mirrored_strategy_matches_single_device(mirrored_strategy):
    """Under MirroredStrategy the replicas' gradients are summed, then one LARS step."""
    strategy = mirrored_strategy
    devices = strategy.extended.worker_devices
    with strategy.scope():
        variables = _tiny_model().trainable_variables
        optimizer = LARS(LEARNING_RATE, weight_decay=WEIGHT_DECAY, eeta=EETA)
        optimizer.build(variables)
    initial = [v.numpy() for v in variables]
    grads = _gradients(variables, num_steps=1, seed=3)[0]

    @tf.function
    def train_step():
        def replica_step():
            # 1/R of the gradient on each replica: the all-reduced sum is `grads`.
            optimizer.apply([tf.constant(g / len(devices)) for g in grads], variables)

        strategy.run(replica_step)

    train_step()
    decays, adapts = _flags(variables, EXCLUDED, EXCLUDED)
    expected_weights, _ = _numpy_lars(
        initial, [grads], [LEARNING_RATE], decays, adapts, momentum=0.9,
        weight_decay=WEIGHT_DECAY, eeta=EETA, classic_momentum=True, nesterov=False,
    )
    for v, expected in zip(variables, expected_weights):
        for component in strategy.experimental_local_results(v.value):
            _assert_close(component.numpy(), expected, name=v.path)
