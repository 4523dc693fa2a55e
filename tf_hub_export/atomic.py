"""Versioned, atomic export directories: export_dir/<step>/ appears complete or not at all.

A module is written into a hidden directory beside its final place and renamed into
place: on a local (POSIX) filesystem a rename is atomic, so a reader - TF Serving polling
export_dir for new numeric versions, a user's hub.KerasLayer - never sees a half-written
module, and a process killed at any moment leaves either the old state or the new one.
Versions are removed the same way (renamed away, then deleted), so a kill while pruning
leaves no half-deleted module under a numeric name either.

Hidden names say what a leftover of a killed export is and who made it:
  .tmp-<step>-<host>-<pid>       being written: garbage once its process is gone;
  .replaced-<step>-<host>-<pid>  the previous export of the same step, renamed away just
                                 before the new one moves in: put back if that never happened;
  .deleting-<step>-<host>-<pid>  an old version being pruned: garbage.
Leftovers of dead processes on this host are handled by the next export. tf.io.gfile
is used so gs:// export dirs work too, but object stores have no atomic rename there.
"""

from __future__ import annotations

import os
import re
import socket
import time
from typing import Callable

import tensorflow as tf

from simclr_tf.errors import ConfigError

# Seconds to wait after the module is fully written and before the rename: tests set it
# to SIGKILL an export at its worst moment (everything written, nothing renamed).
PAUSE_BEFORE_RENAME_ENV = "TF_HUB_EXPORT_PAUSE_BEFORE_RENAME"
_HIDDEN = re.compile(r"^\.(tmp|replaced|deleting)-(\d+)-(.+)-(\d+)$")


def versions(export_dir: str) -> list[int]:
    """Steps of the complete exports in export_dir, ascending."""
    if not tf.io.gfile.isdir(export_dir):
        return []
    return sorted(int(name.rstrip("/")) for name in tf.io.gfile.listdir(export_dir) if name.rstrip("/").isdigit())


def write_version(export_dir: str, step: int, write: Callable[[str], None], *, keep: int) -> str:
    """Calls `write(hidden_dir)`, renames it to export_dir/<step>, prunes; returns the final path.

    Keeps the newest `keep` versions by step, and always the one just written (exporting
    an older step than those present must not delete what it has just written).
    """
    if keep < 1:
        raise ConfigError("ExportConfig.keep_hub_module_max", "must be >= 1", value=keep)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    tf.io.gfile.makedirs(export_dir)
    _clean_up_after_dead_exports(export_dir)
    final = os.path.join(export_dir, str(step))
    tmp = _hidden(export_dir, "tmp", step)
    try:
        write(tmp)
        pause = float(os.environ.get(PAUSE_BEFORE_RENAME_ENV) or 0)
        if pause > 0:
            time.sleep(pause)
        if tf.io.gfile.exists(final):  # Re-export of the same step: swap.
            replaced = _hidden(export_dir, "replaced", step)
            tf.io.gfile.rename(final, replaced)
            tf.io.gfile.rename(tmp, final)
            tf.io.gfile.rmtree(replaced)
        else:
            tf.io.gfile.rename(tmp, final)
    finally:
        if tf.io.gfile.exists(tmp):  # write() or the rename failed.
            tf.io.gfile.rmtree(tmp)
    prune(export_dir, keep=keep, protect=step)
    return final


def prune(export_dir: str, *, keep: int, protect: int | None = None) -> list[int]:
    """Removes all but the newest `keep` versions (and `protect`); returns the removed steps."""
    steps = versions(export_dir)
    survivors = set(steps[-keep:])
    if protect is not None and protect not in survivors:
        survivors = set([s for s in steps if s != protect][-(keep - 1):] if keep > 1 else []) | {protect}
    removed = [s for s in steps if s not in survivors]
    for old in removed:
        doomed = _hidden(export_dir, "deleting", old)
        tf.io.gfile.rename(os.path.join(export_dir, str(old)), doomed)
        tf.io.gfile.rmtree(doomed)
    return removed


def _hidden(export_dir: str, kind: str, step: int) -> str:
    return os.path.join(export_dir, f".{kind}-{step}-{socket.gethostname()}-{os.getpid()}")


def _clean_up_after_dead_exports(export_dir: str) -> None:
    """Deletes what killed exports on this host left behind; puts back a swapped-out version."""
    host = socket.gethostname()
    for name in tf.io.gfile.listdir(export_dir):
        match = _HIDDEN.match(name.rstrip("/"))
        if not match or match.group(3) != host or _alive(int(match.group(4))):
            continue
        kind, step, path = match.group(1), match.group(2), os.path.join(export_dir, name.rstrip("/"))
        final = os.path.join(export_dir, step)
        if kind == "replaced" and not tf.io.gfile.exists(final):
            tf.io.gfile.rename(path, final)  # Killed between its two renames: the old one is intact.
        else:
            tf.io.gfile.rmtree(path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Someone else's live process.
        return True
    return True
