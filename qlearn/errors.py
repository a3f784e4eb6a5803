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


# ---- typed configuration fields ----------------------------------------------------------------
def _type_name(tp) -> str:
    import typing

    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce_value(tp, value, name: str, where: str = "config"):
    """``value`` checked against the type hint ``tp`` (int, float, bool, str, X | None,
    tuple[X, ...], tuple[X, Y], list[X], dict); ints are accepted for floats, and strings that
    YAML leaves unparsed such as ``1e-3`` are read as floats. Raises :class:`ConfigError` naming
    the option, the value and the expected type."""
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)

    def bad(expected: str):
        return ConfigError(f"{where}: {name}={value!r} ({type(value).__name__}) must be "
                           f"{expected}; fix it in the recipe or with --set {name}=...")

    if tp is typing.Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return coerce_value(a, value, name, where)
            except ConfigError as e:
                errors.append(e)
        opts = " or ".join(_type_name(a) for a in inner) + (" or null" if type(None) in args else "")
        raise bad(opts)
    if value is None:
        raise bad(_type_name(tp) + " (not null)")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad("true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad("an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise bad("a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad(f"a list ({_type_name(tp)})")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise bad(f"a list of {len(args)} values ({_type_name(tp)})")
            items = [coerce_value(a, v, f"{name}[{i}]", where)
                     for i, (a, v) in enumerate(zip(args, value))]
        else:
            a = args[0] if args else typing.Any
            items = [coerce_value(a, v, f"{name}[{i}]", where) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise bad("a mapping (key: value)")
    if tp is tuple or tp is list:
        if isinstance(value, (list, tuple)):
            return tp(value)
        raise bad("a list")
    return value  # nested dataclasses and other types are the caller's business


def check_fields(cls, d: dict, where: str = "config", prefix: str = "") -> dict:
    """``d`` (field name -> value) with every value checked against ``cls``'s dataclass field
    types (see :func:`coerce_value`); unknown keys are left for the caller to report."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out = dict(d)
    for f in dataclasses.fields(cls):
        if f.name in out and not dataclasses.is_dataclass(hints.get(f.name)):
            out[f.name] = coerce_value(hints.get(f.name, typing.Any), out[f.name],
                                       prefix + f.name, where)
    return out


def check_range(ok: bool, where: str, name: str, value, rule: str) -> None:
    """Raise :class:`ConfigError` ``where: name=value: rule`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{where}: {name}={value!r}: {rule}")
