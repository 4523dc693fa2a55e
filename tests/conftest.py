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


def _split_cpu_into_logical_devices() -> None:
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS
        )
    except RuntimeError:
        # The runtime was already initialised (e.g. by a plugin); tests that
        # need several replicas skip themselves when fewer devices exist.
        pass


_split_cpu_into_logical_devices()


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over all logical CPUs for the whole session: strategies
    created one after another in a process reuse collective instance keys and abort
    each other's all-reduce/all-gather ("Collective instance ... expected type")."""
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < NUM_LOGICAL_CPUS:
        pytest.skip(f"needs {NUM_LOGICAL_CPUS} logical CPU devices")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


@pytest.fixture
def strategy(mirrored_strategy):
    return mirrored_strategy
