"""Config overlays shared by every config in the project (curation, model, training).

A config is a tree of dataclasses. ``overlay_config`` applies a mapping (from YAML
or ``key.sub=value`` overrides) to a copy of it and rejects unknown keys, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def overlay_config(obj: Any, values: dict[str, Any], where: str = "",
                   mapping_fields: dict[str, type] | None = None) -> Any:
    """Return a copy of dataclass ``obj`` with the mapping ``values`` applied recursively.

    ``mapping_fields`` names fields of ``obj`` that are ``dict[str, <dataclass>]``: each
    entry is overlaid on a fresh instance of that dataclass. Unknown keys raise
    ``ValueError`` naming the key.
    """
    if not isinstance(values, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {values!r}")
    names = {f.name for f in dataclasses.fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise ValueError(f"unknown config key '{where + key}' (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if mapping_fields and key in mapping_fields:
            kind = mapping_fields[key]
            changes[key] = {name: overlay_config(kind(), v or {}, f"{where}{key}.{name}.")
                            for name, v in (value or {}).items()}
        elif dataclasses.is_dataclass(current):
            changes[key] = overlay_config(current, value or {}, f"{where}{key}.")
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


def load_layered_config(defaults: T, path: str | Path | None = None, overrides: list[str] | None = None,
                        mapping_fields: dict[str, type] | None = None) -> T:
    """``defaults``, then the YAML file at ``path``, then ``key.sub=value`` overrides; unknown keys raise."""
    cfg = defaults
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            cfg = overlay_config(cfg, yaml.safe_load(fh) or {}, mapping_fields=mapping_fields)
    for text in overrides or []:
        cfg = overlay_config(cfg, parse_override(text), mapping_fields=mapping_fields)
    return cfg
