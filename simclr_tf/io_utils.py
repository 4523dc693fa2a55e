"""Atomic writes: a reader (or a resumed run) never sees a half-written results file.

Paths may be local or any filesystem TensorFlow knows (gs://... for TPU runs), so
files are written through tf.io.gfile; plain `open`/`os.makedirs` would quietly
create a local directory called "gs:".
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from typing import Any

import tensorflow as tf


def is_remote(path: str) -> bool:
    return "://" in path


def _write_local(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; results should be readable like any file the user writes.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomically(path: str, text: str) -> str:
    """Writes to a temporary file beside `path`, then renames it over `path`; returns `path`.

    Local renames are atomic. Object stores have no rename: there the object appears
    whole when its upload completes, which gives readers the same guarantee.
    """
    if not is_remote(path):
        _write_local(path, text)
        return path
    tf.io.gfile.makedirs(os.path.dirname(path))
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path


def write_json_atomically(path: str, value: Any) -> str:
    return write_text_atomically(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def append_json_line(path: str, value: Any) -> None:
    """Appends one JSON object per line (a log a machine can read while the run goes on).

    Object stores cannot append: there the log is rewritten whole (logs hold one line
    per reported loop, so this stays small).
    """
    line = json.dumps(value, sort_keys=True) + "\n"
    if not is_remote(path):
        with open(path, "a") as f:
            f.write(line)
        return
    previous = ""
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            previous = f.read()
    write_text_atomically(path, previous + line)
