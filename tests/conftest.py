"""Test-session setup shared by every test module.

The CPU is split into logical devices once, before TensorFlow initialises its
runtime, so that MirroredStrategy tests can run several replicas on this
machine. Tests that do not ask for a strategy still run on /cpu:0 alone.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
