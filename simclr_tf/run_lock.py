"""One training run per model_dir at a time: model_dir/run.lock names the run that holds it.

Two runs on one model_dir would overwrite each other's checkpoints and interleave their
logs. The second is refused with a message naming the holder (host, pid, start time).

Local filesystems: an exclusive `fcntl.flock` on run.lock. The kernel releases it when
the holder exits in any way, SIGKILL and OOM kill included, so a lock left by a killed
run is never mistaken for a live one: the next run takes it over and says whose it was.
On release the file is emptied, not deleted (deleting a locked file lets a process that
opened the old one and a process that creates a new one both hold "the" lock).

Object stores (gs://, anything tf.io.gfile reaches with a scheme): no locks and no
exclusive create, so the holder rewrites run.lock every `heartbeat_seconds` and a lock
whose heartbeat is older than `stale_after_seconds` (or whose holder is a dead process on
this host) is taken over. Guaranteed there: a live run is never taken over while its
heartbeat is fresh; not guaranteed: two runs started within the same few seconds can both
pass the check, since reading and writing the object are two steps.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time

import tensorflow as tf

from simclr_tf.io_utils import is_remote, write_text_atomically
from simclr_tf.run_dir import LOCK_FILE, RunDirError

try:
    import fcntl
except ImportError:  # Not POSIX: only the heartbeat lock is available.
    fcntl = None


class RunLockedError(RunDirError):
    """Another run holds model_dir; the message names it."""


def uses_heartbeat(path: str) -> bool:
    """Whether `path` needs the heartbeat lock (no flock on object stores, nor off POSIX)."""
    return is_remote(path) or fcntl is None


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}")


def _alive_here(holder: dict) -> bool | None:
    """Whether the holder process is alive, if it ran on this host; None when it is elsewhere."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return None
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """Context manager holding model_dir/run.lock; `taken_over` describes a dead holder it replaced."""

    def __init__(self, model_dir: str, *, heartbeat_seconds: float = 60.0, stale_after_seconds: float = 600.0):
        self.model_dir = model_dir
        self.path = os.path.join(model_dir, LOCK_FILE)
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after_seconds = stale_after_seconds
        self.taken_over: str | None = None
        self.holder = {
            "host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        self._fd: int | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> "RunLock":
        tf.io.gfile.makedirs(self.model_dir)
        if uses_heartbeat(self.path):
            self._acquire_heartbeat_lock()
        else:
            self._acquire_flock()
        return self

    def __exit__(self, *exc_info) -> bool:
        self.release()
        return False

    def _refuse(self, holder: dict) -> None:
        raise RunLockedError("model_dir", self.model_dir,
                             f"is in use by another run ({_describe(holder)}; {self.path}); a second run would "
                             f"overwrite its checkpoints. Wait for it to finish, stop it, or use another model_dir")

    def _acquire_flock(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _parse(os.pread(fd, 4096, 0))
            os.close(fd)
            self._refuse(holder)
        previous = _parse(os.pread(fd, 4096, 0))
        if previous:  # Unlocked yet not emptied: its run ended without releasing it.
            self.taken_over = _describe(previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(self.holder) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def _acquire_heartbeat_lock(self) -> None:
        if tf.io.gfile.exists(self.path):
            with tf.io.gfile.GFile(self.path, "rb") as f:
                holder = _parse(f.read())
            if holder:
                age = time.time() - float(holder.get("heartbeat", 0))
                alive = _alive_here(holder)
                if alive or (alive is None and age < self.stale_after_seconds):
                    self._refuse(holder)
                self.taken_over = _describe(holder)
        self._write_heartbeat()
        self._heartbeat = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._heartbeat.start()

    def _write_heartbeat(self) -> None:
        write_text_atomically(self.path, json.dumps({**self.holder, "heartbeat": time.time()}) + "\n")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            self._write_heartbeat()

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # Closing releases the flock.
            self._fd = None
        if self._heartbeat is not None:
            self._stop.set()
            self._heartbeat.join()
            self._heartbeat = None
            tf.io.gfile.remove(self.path)


def _parse(raw: bytes) -> dict:
    """The holder a lock file names ({} when empty or unreadable: a free lock)."""
    try:
        holder = json.loads(raw.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}
