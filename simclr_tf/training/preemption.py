"""Stop requests (SIGTERM from TPU/GCE/Kubernetes preemption, Ctrl-C) turned into a flag the
training loop checks between loops of steps, so it can save a checkpoint and exit cleanly.

Signals only set the flag: a checkpoint written from inside a signal handler could
interleave with one the loop is writing.
"""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Context manager: while active, SIGTERM and SIGINT set `.signal_name` instead of killing."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signal_name: str | None = None
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
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        return False
