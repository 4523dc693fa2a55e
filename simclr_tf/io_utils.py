"""Atomic writes: a reader (or a resumed run) never sees a half-written results file."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def write_text_atomically(path: str, text: str) -> str:
    """Writes to a temporary file in the same directory, then renames it over `path`."""
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
    return path


def write_json_atomically(path: str, value: Any) -> str:
    return write_text_atomically(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def append_json_line(path: str, value: Any) -> None:
    """Appends one JSON object per line (a log a machine can read while the run goes on)."""
    with open(path, "a") as f:
        f.write(json.dumps(value, sort_keys=True) + "\n")
