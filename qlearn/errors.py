"""qlearn's errors for user mistakes, and its warnings for set-ups that run but learn less.

Every message names the problem *and* the fix: the file (and line), the option or the command to
run. The ``qlearn`` command prints a :class:`QlearnError` as one line and exits non-zero; with
``qlearn --debug ...`` (or ``QLEARN_DEBUG=1``) it shows the traceback instead.

    QlearnError                  base of every user mistake
    ├── ConfigError              a recipe / option value of the wrong type or out of range
    ├── DataError                missing, corrupt or unusable input data
    │   └── IntegrityError       a transcript file differs from its download manifest (sha256)
    ├── ModelLoadError           a model or adapter folder that cannot be loaded
    │   └── ModelNotFoundError   ... because it is not there (also a FileNotFoundError)
    ├── CheckpointError          ``--resume`` without a checkpoint to resume from
    └── InputError               a bad argument to generation / evaluation (empty text, n = 0)

They also subclass the builtin a caller would have caught before (``ValueError`` or
``FileNotFoundError``), so ``except ValueError`` keeps working.
"""
from __future__ import annotations

import os
import warnings


class QlearnError(Exception):
    """A user mistake; ``str(e)`` names the problem and the fix."""


class ConfigError(QlearnError, ValueError):
    """A configuration value of the wrong type or out of range (names the option)."""


class DataError(QlearnError, ValueError):
    """Bad or missing input data; the message names the file/line/option and the fix."""


class IntegrityError(DataError):
    """A local transcript file does not match the sha256 of its download manifest."""


class ModelLoadError(QlearnError, ValueError):
    """A base model, run folder or adapter that cannot be loaded (missing, garbage, mismatched)."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """A model folder or file that does not exist."""


class CheckpointError(QlearnError, FileNotFoundError):
    """Nothing to resume from."""


class InputError(QlearnError, ValueError):
    """A bad argument (empty text, ``n`` = 0, an unknown querier where one is required)."""


class QlearnWarning(UserWarning):
    """Something that runs but will not be learned or is silently changed (named in the text)."""


def warn(message: str, stacklevel: int = 2) -> None:
    """Emit a :class:`QlearnWarning` (printed as one ``qlearn: warning: ...`` line by the CLI)."""
    warnings.warn(message, QlearnWarning, stacklevel=stacklevel + 1)


def debug_enabled() -> bool:
    return os.environ.get("QLEARN_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def one_line(e: BaseException) -> str:
    """The message of ``e`` on one line (newlines squeezed), prefixed by its type if it is not ours."""
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, KeyError) and text.startswith("'"):
        text = f"missing key {text}"
    return text if isinstance(e, QlearnError) else f"{type(e).__name__}: {text}"
