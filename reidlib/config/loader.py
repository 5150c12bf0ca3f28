"""Experiment configuration: frozen dataclasses, composed once, never global.

A :class:`Config` has seven sections (``data``, ``model``, ``scl``, ``search``, ``cluster``,
``train``, ``eval``), each a frozen dataclass in :mod:`reidlib.config.sections` that checks its own values.
Every field name is unique across the sections, so an override may name a field by its short name
(``k=0``, ``epochs=3``) or by its full dotted key (``scl.k=0``); notebooks use the short names as
papermill parameters. An unknown key, a wrong type or an out-of-range value raises
:class:`~reidlib.errors.ConfigError` naming the key. The resolved config is saved beside every run
as ``config.yaml``; keys renamed since (:data:`RENAMED_KEYS`) still load.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import yaml

from reidlib.config.sections import Config
from reidlib.errors import ConfigError

__all__ = [
    "RENAMED_KEYS",
    "SECTIONS",
    "field_index",
    "apply_overrides",
    "parse_set",
    "load_config",
    "config_from_dict",
    "save_config",
]

# Old key -> its key now, so that runs saved before a key moved (config.yaml, a checkpoint's
# config), user YAML and overrides still load: the search settings were fields of `scl` until
# they got their own section, and the short name `search` was the backend's.
RENAMED_KEYS = {"search": "search.backend", "scl.search": "search.backend"} | {
    f"scl.{name}": f"search.{name}" for name in ("faiss_index", "faiss_dim", "nlist", "nprobe", "rerank")
}

SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]


def field_index() -> dict[str, str]:
    """Map every short field name to its dotted key, e.g. ``{"k": "scl.k", ...}``."""
    index: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            if f.name in index:  # guarded by a test; short names must stay unique
                raise AssertionError(f"field {f.name} appears in two sections")
            index[f.name] = f"{section}.{f.name}"
    return index


def _resolve_key(key: str) -> tuple[str, str]:
    """(section, field) of a dotted key, a short name or an old key (:data:`RENAMED_KEYS`)."""
    key = RENAMED_KEYS.get(key, key)
    section, _, name = (key if "." in key else field_index().get(key, "")).partition(".")
    if section in SECTIONS and name in {f.name for f in fields(SECTIONS[section])}:
        return section, name
    raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(field_index()))}")


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Return ``value`` if it fits ``annotation`` (ints are accepted for floats), else raise."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (annotation,) = [a for a in args if a is not type(None)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if annotation is int and isinstance(value, bool):
        raise ConfigError(f"config key {key!r} expects int, got bool {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"config key {key!r} expects {annotation.__name__}, got {type(value).__name__} {value!r}")
    return value


def apply_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """Return a copy of ``cfg`` with ``overrides`` (short or dotted keys) applied and validated."""
    changes: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, name = _resolve_key(key)
        hints = typing.get_type_hints(SECTIONS[section])
        changes.setdefault(section, {})[name] = _check_type(f"{section}.{name}", value, hints[name])
    new = replace(cfg, **{s: replace(getattr(cfg, s), **c) for s, c in changes.items()})
    new.check()
    return new


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings from the command line; values are read as YAML scalars.

    ``epochs=3`` gives an int, ``lr=0.01`` a float, ``deterministic=true`` a bool, ``m=null`` None.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: value is not a YAML scalar ({err})") from err
    return out


def _flatten(tree: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, body in tree.items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown config section {section!r}; valid: {', '.join(SECTIONS)}")
        if body is None:
            continue
        if not isinstance(body, Mapping):
            raise ConfigError(f"{source}: section {section!r} must be a mapping, got {body!r}")
        for name, value in body.items():
            flat[f"{section}.{name}"] = value
    return flat


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Compose defaults, an optional YAML file and overrides into one validated :class:`Config`."""
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from err
        if not isinstance(tree, Mapping):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(tree).__name__}")
        try:
            cfg = apply_overrides(cfg, _flatten(tree, str(path)))
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err
    return apply_overrides(cfg, dict(overrides or {}))


def config_from_dict(tree: Mapping[str, Any]) -> Config:
    """Rebuild a :class:`Config` from :meth:`Config.to_dict` output (e.g. a saved config.yaml)."""
    return apply_overrides(Config(), _flatten(tree, "config"))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
