"""Versioned, atomic export directories: export_dir/<step>/ appears complete or not at all.

The SavedModel is written into a hidden temporary directory beside its final place, then
renamed (atomic within one filesystem); an older export of the same step is swapped out
the same way. Only the newest `keep` numeric versions are kept.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Callable

# Tests set this to hold a finished temporary export open for a while before the rename,
# so they can kill the process at that worst moment.
PAUSE_BEFORE_RENAME_ENV = "SIMCLR_TF_EXPORT_PAUSE_BEFORE_RENAME"


def versions(export_dir: str) -> list[int]:
    if not os.path.isdir(export_dir):
        return []
    return sorted(int(name) for name in os.listdir(export_dir) if name.isdigit())


def write_version(export_dir: str, step: int, write: Callable[[str], None], keep: int) -> str:
    """Calls `write(tmp_dir)`, then moves tmp_dir to export_dir/<step>; returns that path."""
    if keep < 1:
        raise ValueError(f"--keep_hub_module_max must be >= 1, got {keep}")
    os.makedirs(export_dir, exist_ok=True)
    final = os.path.join(export_dir, str(step))
    tmp = os.path.join(export_dir, f".tmp-{step}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        pause = float(os.environ.get(PAUSE_BEFORE_RENAME_ENV, "0") or 0)
        if pause:
            time.sleep(pause)
        if os.path.exists(final):
            stale = os.path.join(export_dir, f".old-{step}-{os.getpid()}")
            os.rename(final, stale)
            os.rename(tmp, final)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in versions(export_dir)[:-keep]:
        shutil.rmtree(os.path.join(export_dir, str(old)), ignore_errors=True)
    _remove_leftovers(export_dir)
    return final


def _remove_leftovers(export_dir: str) -> None:
    """Temporary directories of killed exports (whose process is gone) are garbage."""
    for name in os.listdir(export_dir):
        if name.startswith((".tmp-", ".old-")):
            pid = name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(os.path.join(export_dir, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
