"""Config overlays shared by every config in the project (curation, model, training).

A config is a tree of dataclasses. ``overlay_config`` applies a mapping (from YAML
or ``key.sub=value`` overrides) to a copy of it and rejects unknown keys, so a
typo never silently falls back to a default. Every value is checked against its
field's type (``int``, ``float``, ``bool``, ``str``, ``X | None``, ``list[X]``,
``tuple[X, ...]``, ``dict[K, V]``) and against the range its name's unit implies
(:data:`RANGE_RULES`: seconds are not negative, a fraction or probability lies in
[0, 1], a cosine in [-1, 1], a rate is positive ...). A wrong value raises
:class:`ConfigError` naming the key, the expected type or range and the value given.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

# (name suffixes, low, high, low is exclusive): the range a numeric field's unit implies.
RANGE_RULES: tuple[tuple[tuple[str, ...], float, float, bool], ...] = (
    (("_frac", "_prob", "_confidence"), 0.0, 1.0, False),
    (("_cos",), -1.0, 1.0, False),
    (("fps", "_hz"), 0.0, math.inf, True),
    (("_s",), 0.0, math.inf, False),
    (("_threads", "_px", "_pixels", "_frames", "_windows", "_retries", "_per_shard", "_per_row_group", "beam_size", "max_faces",
      "batch_size"), 0.0, math.inf, False),
)


class ConfigError(ValueError):
    """A config key or value that is not allowed; the message names the key, what is expected and the value."""


def describe_type(hint: Any) -> str:
    if typing.get_origin(hint) is None and hasattr(hint, "__name__"):
        return hint.__name__
    return str(hint).replace("typing.", "")


def check_range(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    name = key.rsplit(".", 1)[-1]
    for suffixes, low, high, open_low in RANGE_RULES:
        if name.endswith(suffixes):
            bad = math.isnan(value) or value > high or (value <= low if open_low else value < low)
            if bad:
                lo = f"> {low:g}" if open_low else f">= {low:g}"
                hi = "" if math.isinf(high) else f" and <= {high:g}"
                raise ConfigError(f"config key '{key}': expected a value {lo}{hi} (its unit, from the name), "
                                  f"got {value!r}")
            return


def check_value(key: str, value: Any, hint: Any) -> Any:
    """``value`` converted to the field type ``hint`` (int -> float, list -> tuple), or :class:`ConfigError`."""
    if hint is Any or hint is typing.Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_value(key, value, arg)
            except ConfigError:
                continue  # try the union's next type
        raise ConfigError(f"config key '{key}': expected {describe_type(hint)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key '{key}': expected {describe_type(hint)} (a list), got {value!r}")
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        items = [check_value(f"{key}[{i}]", v, inner) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected {describe_type(hint)} (a mapping), got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected bool (true or false), got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected int, got {value!r}")
        check_range(key, value)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key '{key}': expected float, got {value!r}")
        check_range(key, float(value))
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected str, got {value!r}")
        return value
    return value  # other annotations (callables, arrays): not checked here


def field_hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(type(obj))
    except Exception:  # an annotation that does not resolve: no type checks for this dataclass
        return {}


def overlay_config(obj: Any, values: dict[str, Any], where: str = "",
                   mapping_fields: dict[str, type] | None = None) -> Any:
    """Return a copy of dataclass ``obj`` with the mapping ``values`` applied recursively.

    ``mapping_fields`` names fields of ``obj`` that are ``dict[str, <dataclass>]``: each
    entry is overlaid on a fresh instance of that dataclass. Unknown keys raise
    ``ValueError`` naming the key.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    names = {f.name for f in dataclasses.fields(obj)}
    hints = field_hints(obj)
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown config key '{where + key}' (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if mapping_fields and key in mapping_fields:
            kind = mapping_fields[key]
            changes[key] = {name: overlay_config(kind(), v or {}, f"{where}{key}.{name}.")
                            for name, v in (value or {}).items()}
        elif dataclasses.is_dataclass(current):
            changes[key] = overlay_config(current, value or {}, f"{where}{key}.")
        elif key in hints:
            changes[key] = check_value(where + key, value, hints[key])
        else:
            changes[key] = value
    return dataclasses.replace(obj, **changes)


def parse_override(text: str) -> dict[str, Any]:
    """``"vad.threshold=0.6"`` -> ``{"vad": {"threshold": 0.6}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} is not key=value")
    key, raw = text.split("=", 1)
    value: Any = yaml.safe_load(raw)
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


EXTENDS = "extends"  # top-level YAML key: another config file (relative to this one) applied first


def read_yaml_chain(path: str | Path, seen: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """The mappings of ``path`` and of the files it ``extends``, base first."""
    p = Path(path).resolve()
    if p in seen:
        raise ConfigError(f"{path}: 'extends' loops back to itself ({' -> '.join(str(s) for s in seen)})")
    with open(p, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    base = data.pop(EXTENDS, None)
    chain = read_yaml_chain(p.parent / base, (*seen, p)) if base else []
    return [*chain, data]


def load_layered_config(defaults: T, path: str | Path | None = None, overrides: list[str] | None = None,
                        mapping_fields: dict[str, type] | None = None) -> T:
    """``defaults``, then the YAML file at ``path`` (after the files it ``extends``), then ``key.sub=value``
    overrides; unknown keys and wrong values raise :class:`ConfigError`."""
    cfg = defaults
    if path is not None:
        for layer in read_yaml_chain(path):
            cfg = overlay_config(cfg, layer, mapping_fields=mapping_fields)
    for text in overrides or []:
        cfg = overlay_config(cfg, parse_override(text), mapping_fields=mapping_fields)
    return cfg
