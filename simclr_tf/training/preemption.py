"""Stop requests (SIGTERM from TPU/GCE/Kubernetes preemption, Ctrl-C) turned into a flag the
training loop checks between loops of steps, so it can save a checkpoint and exit cleanly.

Signals only set the flag: a checkpoint written from inside a signal handler could
interleave with one the loop is writing.

Several worker processes (MultiWorkerMirroredStrategy) must stop together: a worker that
stops alone leaves the others blocked in the next collective, and workers that save at
different steps cannot resume together. `CoordinatedStop` hands SIGTERM to TensorFlow's
PreemptionCheckpointHandler, which agrees on a step through the coordination service;
every worker then saves that step and stops.
"""

from __future__ import annotations

import signal
import tempfile
import threading
from typing import Callable

import tensorflow as tf


class StopRequest:
    """Context manager: while active, SIGTERM and SIGINT set `.signal_name` instead of killing."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, signals: tuple[signal.Signals, ...] = SIGNALS):
        self.signal_name: str | None = None
        self.signals = signals
        self._previous = {}

    def __bool__(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, frame):
        del frame
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # A second Ctrl-C stops at once.
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        # Handlers can only be installed from the main thread (e.g. not inside a notebook worker).
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        return False


def spans_processes(strategy: tf.distribute.Strategy) -> bool:
    """Whether the strategy's replicas live in several processes that must stop together."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver is not None
            and bool(resolver.cluster_spec().jobs))


class _Stopped(Exception):
    """Raised by the handler's exit function: the checkpoint is saved, training stops."""


class CoordinatedStop:
    """SIGTERM to any worker: all workers save the same step (with `save`) and stop.

    `check()` must be called once per loop of steps by every worker, at the same points
    (the loop makes them: every worker runs the same loops). The handler's own step
    counter is kept out of the run's checkpoints: it is given an empty checkpoint and a
    scratch directory, and saving goes through `save`, so checkpoints stay ours.
    """

    signal_name: str | None = None

    def __init__(self, strategy: tf.distribute.Strategy, save: Callable[[], object]):
        def stop():
            raise _Stopped

        self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver, tf.train.Checkpoint(), tempfile.mkdtemp(prefix="preemption-"),
            termination_config=tf.distribute.experimental.TerminationConfig(
                exit_fn=stop, save_fn=lambda: save(), grace_period=0),
        )

    def check(self) -> None:
        """Saves and sets `signal_name` when some worker was told to stop; else returns at once."""
        try:
            self._handler.save_checkpoint_if_preempted()
        except _Stopped:
            self.signal_name = "SIGTERM"
