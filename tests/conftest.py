"""Test-session setup shared by every test module.

The CPU is split into logical devices once, before TensorFlow initialises its
runtime, so that MirroredStrategy tests can run several replicas on this
machine. Tests that do not ask for a strategy still run on /cpu:0 alone.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402  (environment must be set first)

NUM_LOGICAL_CPUS = 4
# SIMCLR_TEST_DEVICE=GPU (benchmarks/gpu_check.sh): the first GPU is split into this many
# logical GPUs instead, so the replica tests run the same math on the GPU.
TEST_DEVICE = os.environ.get("SIMCLR_TEST_DEVICE", "CPU").upper()
LOGICAL_GPU_MEMORY_MB = 8192


def _split_into_logical_devices() -> None:
    if TEST_DEVICE == "GPU":
        physical = tf.config.list_physical_devices("GPU")[:1]
        config = [tf.config.LogicalDeviceConfiguration(memory_limit=LOGICAL_GPU_MEMORY_MB)] * NUM_LOGICAL_CPUS
    else:
        physical = tf.config.list_physical_devices("CPU")
        config = [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS
    if not physical:
        raise RuntimeError(f"SIMCLR_TEST_DEVICE={TEST_DEVICE}: TensorFlow sees no such device")
    try:
        tf.config.set_logical_device_configuration(physical[0], config)
    except RuntimeError:
        # The runtime was already initialised (e.g. by a plugin); tests that
        # need several replicas skip themselves when fewer devices exist.
        pass


_split_into_logical_devices()


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over all logical CPUs for the whole session: strategies
    created one after another in a process reuse collective instance keys and abort
    each other's all-reduce/all-gather ("Collective instance ... expected type")."""
    devices = tf.config.list_logical_devices("GPU" if TEST_DEVICE == "GPU" else "CPU")
    if len(devices) < NUM_LOGICAL_CPUS:
        pytest.skip(f"needs {NUM_LOGICAL_CPUS} logical {TEST_DEVICE} devices")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


@pytest.fixture
def strategy(mirrored_strategy):
    return mirrored_strategy
