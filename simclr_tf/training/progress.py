"""A progress line people can read (step, rate, ETA, metrics) and a JSON-lines log machines can."""

from __future__ import annotations

import datetime
import time
from typing import Callable

from simclr_tf.io_utils import append_json_line


def format_duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(round(max(seconds, 0.0)))))


class Progress:
    """Reports after each loop of steps: `step 120/2340 (5.1%) | 610 img/s | ETA 0:05:12 | ...`.

    The rate excludes the first report (it includes tracing and warm-up) as soon as
    a later one exists, so the ETA is not skewed by start-up.
    """

    def __init__(
        self,
        total_steps: int,
        global_batch_size: int,
        start_step: int,
        log_path: str | None = None,
        printer: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total_steps = total_steps
        self.global_batch_size = global_batch_size
        self.log_path = log_path
        self.printer = printer
        self.clock = clock
        self._start = (clock(), start_step)
        self._first_report: tuple[float, int] | None = None

    def discount(self, seconds: float) -> None:
        """Leaves `seconds` of non-training work (a monitor, an evaluation) out of the rate."""
        self._start = (self._start[0] + seconds, self._start[1])
        if self._first_report:
            self._first_report = (self._first_report[0] + seconds, self._first_report[1])

    def steps_per_second(self, now: float, step: int) -> float:
        since_time, since_step = self._first_report if self._first_report and step > self._first_report[1] else self._start
        elapsed = now - since_time
        return (step - since_step) / elapsed if elapsed > 0 else 0.0

    def report(self, step: int, metrics: dict[str, float]) -> dict:
        now = self.clock()
        rate = self.steps_per_second(now, step)
        if self._first_report is None:
            self._first_report = (now, step)
        eta = (self.total_steps - step) / rate if rate > 0 else float("nan")
        record = {
            "step": step,
            "total_steps": self.total_steps,
            "images_per_second": rate * self.global_batch_size,
            "eta_seconds": eta,
            "elapsed_seconds": now - self._start[0],
            **metrics,
        }
        shown = " | ".join(f"{name} {value:.4g}" for name, value in metrics.items())
        eta_text = format_duration(eta) if eta == eta else "?"
        self.printer(
            f"step {step}/{self.total_steps} ({100.0 * step / self.total_steps:.1f}%) | "
            f"{record['images_per_second']:.0f} img/s | ETA {eta_text} | {shown}"
        )
        if self.log_path:
            append_json_line(self.log_path, record)
        return record
