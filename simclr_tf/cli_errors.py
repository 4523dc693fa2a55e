"""How the command-line tools report a user's mistake: one line that names the flag.

The library names config fields (`TrainConfig.train_batch_size`) and arguments
(`model_dir`); this is the one place that turns those names into the flags a user typed.
Only `UserError`s become one line: any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
import sys
from typing import NoReturn

from absl import flags

from simclr_tf.errors import PathError, UserError

# Config fields whose flag has another name; every other field's flag is its own name.
FIELD_FLAGS = {
    "AugmentConfig.ops": "augmentations",
    "AugmentConfig.crop_area_range": "crop_min_area",
    "SourceConfig.split": "train_split",
}
# A field named with its class, e.g. TrainConfig.train_batch_size or EvalTask.output.
_QUALIFIED_FIELD = re.compile(r"\b([A-Z][A-Za-z0-9]*)\.([a-z_][a-z0-9_]*)\b")


def flag_message(error: UserError, values: flags.FlagValues = flags.FLAGS) -> str:
    """`error`'s message in flags, on one line.

    Each qualified config field becomes `--flag` when this tool has that flag; a path
    error names `--argument=path` when the user gave that path as that flag.
    """
    if isinstance(error, PathError) and error.argument in values and values[error.argument].value == error.path:
        return f"--{error.argument}={error.path}: {error.problem}"
    return " ".join(in_flags(str(error), values).split())


def in_flags(text: str, values: flags.FlagValues = flags.FLAGS) -> str:
    """`text` (an error or a warning of the library) with each config field this tool has a flag for as `--flag`."""
    def to_flag(match: re.Match) -> str:
        qualified = match.group(0)
        name = FIELD_FLAGS.get(qualified, match.group(2))
        return f"--{name}" if name in values else qualified

    return _QUALIFIED_FIELD.sub(to_flag, text)


def exit_with(error: UserError, values: flags.FlagValues = flags.FLAGS, prefix: str = "") -> NoReturn:
    """Ends the process with `error: <message>` on stderr and exit status 1."""
    sys.exit(f"error: {prefix}{flag_message(error, values)}")
