"""Dataclass configs from mappings, shared by every recipe of qlearn: ``TrainConfig``
(:mod:`qlearn.train`), ``QARConfig`` (:mod:`qlearn.model`), ``ContrastiveConfig``
(:mod:`qlearn.contrastive`), ``AblateConfig``/``EvalConfig`` and the grid's systems
(:mod:`qlearn.evaluate`).

* :func:`build`: ``cls(**d)`` with unknown keys, value types (:func:`coerce_value`) and nested
  dataclass fields checked, every error one :class:`~qlearn.errors.ConfigError` naming the file
  and the dotted key;
* :func:`set_dotted` / :func:`apply_overrides`: ``a.b=value`` overrides (``--set``, a system's
  overrides) written into a recipe mapping;
* :func:`check_range`: a range rule as one ``ConfigError``.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Sequence

from .errors import ConfigError

__all__ = ["apply_overrides", "build", "check_fields", "check_range", "coerce_value", "set_dotted"]


def set_dotted(d: dict, dotted: str, value, what: str | None = None) -> None:
    """``d[a][b] = value`` for ``dotted = "a.b"``, creating the mappings on the way; a part that
    is not a mapping raises :class:`ConfigError` (``what`` names the override in the message)."""
    node = d
    *parents, leaf = dotted.strip().split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{what or dotted!r}: {p} is not a mapping")
    node[leaf] = value


def apply_overrides(d: dict, overrides: Sequence[str], where: str = "config",
                    example: str = "--set a.b=1") -> dict:
    """``--set key.sub=value`` overrides (values parsed as YAML) written into ``d`` in place."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: write key=value, e.g. {example}")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({e})") from e
        try:
            set_dotted(d, key, parsed)
        except ConfigError as e:
            part = str(e).split(": ", 1)[1]
            raise ConfigError(f"--set {item!r}: {part} in {where}") from None
    return d


def build(cls, d, where: str = "config", prefix: str = "", label: str | None = None):
    """``cls(**d)`` for the dataclass ``cls``, checked before any work starts: ``d`` is a mapping
    (an instance of ``cls`` is returned as it is), it has no unknown key, every value has its
    field's type (:func:`check_fields`), nested dataclass fields are built from their mappings
    (``prefix + field + "."``) and the errors of ``cls.__post_init__`` are prefixed by ``where``.
    Every failure is one :class:`ConfigError` naming ``where`` and the dotted key."""
    if isinstance(d, cls):
        return d
    label = label or (prefix.rstrip(".") or cls.__name__)
    if d is None:
        d = {}
    if not isinstance(d, dict):
        if prefix:
            raise ConfigError(f"{where}: {prefix.rstrip('.')} must be a mapping of {cls.__name__} "
                              f"fields, got {d!r}")
        raise ConfigError(f"{where}: a recipe is a mapping of {cls.__name__} fields (key: value), "
                          f"not a {type(d).__name__}")
    names = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(d) - set(names))
    if unknown:
        if prefix:
            raise ConfigError(f"{where}: unknown {prefix}{unknown[0]} (valid {label} fields: "
                              f"{names})")
        raise ConfigError(f"{where}: unknown {label} field(s) {unknown}; valid: {names}")
    d = check_fields(cls, d, where, prefix)  # types
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints.get(f.name)
        if f.name in d and dataclasses.is_dataclass(kind):
            if d[f.name] is None:  # null: the field's default
                del d[f.name]
            else:
                d[f.name] = build(kind, d[f.name], where, f"{prefix}{f.name}.")
    try:
        return cls(**d)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


# ---- typed fields ----------------------------------------------------------------
def _type_name(tp) -> str:
    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce_value(tp, value, name: str, where: str = "config"):
    """``value`` checked against the type hint ``tp`` (int, float, bool, str, X | None,
    tuple[X, ...], tuple[X, Y], list[X], dict); ints are accepted for floats, and strings that
    YAML leaves unparsed such as ``1e-3`` are read as floats. Raises :class:`ConfigError` naming
    the option, the value and the expected type."""
    import types

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
        for a in inner:
            try:
                return coerce_value(a, value, name, where)
            except ConfigError:
                pass
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
