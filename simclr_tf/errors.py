"""The errors a user can cause, kept apart from bugs.

A `UserError` says what the user asked for that cannot be done (a config value, a path,
a dataset) in words a user can act on; the command-line tools print it as one line.
Anything else is a bug or an environment failure and keeps its traceback.

Library code names Python things: a config field as `TrainConfig.train_batch_size`, an
argument by its name. Only the CLI knows flags; `simclr_tf.cli_errors` translates.
"""

from __future__ import annotations

from typing import Any, NoReturn


_NO_VALUE = object()


class UserError(Exception):
    """Input that cannot be used; the message names the field, argument or file."""


class ConfigError(UserError, ValueError):
    """A config field (or combination of fields) has a value that cannot be used.

    `field` is the qualified name, e.g. "TrainConfig.train_batch_size"; the message
    starts with it, and may name other qualified fields the problem involves.
    """

    def __init__(self, field: str, message: str, *, value: Any = _NO_VALUE):
        self.field = field
        named = field if value is _NO_VALUE else f"{field}={value}"
        super().__init__(f"{named} {message}")


class PathError(UserError):
    """A path given as `argument` (e.g. "model_dir", "checkpoint") cannot be used."""

    def __init__(self, argument: str, path: str, problem: str):
        self.argument, self.path, self.problem = argument, path, problem
        super().__init__(f"{argument} {path}: {problem}")


class EvaluationError(UserError, ValueError):
    """An encoder, output or split cannot be evaluated as asked; the message names the argument."""


def fail(field: str, value: Any, requirement: str) -> NoReturn:
    """Raises ConfigError: "<field> <requirement>, got <value>"."""
    raise ConfigError(field, f"{requirement}, got {value!r}")
