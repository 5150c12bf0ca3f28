"""Experiment configuration: frozen dataclasses, composed once, never global.

A :class:`Config` has seven sections (``data``, ``model``, ``scl``, ``search``, ``cluster``,
``train``, ``eval``), each a frozen dataclass in :mod:`reidlib.config.sections` (re-exported here).
Every field name is unique across the sections, so an override may name a field by its short name
(``k=0``, ``epochs=3``) or by its full dotted key (``scl.k=0``); notebooks use the short names as
papermill parameters. An unknown key, a wrong type or an out-of-range value raises
:class:`~reidlib.errors.ConfigError` naming the key. The resolved config is saved beside every run
as ``config.yaml``; keys renamed since (:data:`RENAMED_KEYS`) still load.
"""

from __future__ import annotations

import types
import typing
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from reidlib.config.sections import (
    CAMERA_DEBIAS, FAISS_INDEXES, LAYOUTS, LR_SCHEDULES, METHODS, MIXTURE_WRITERS, OPTIMIZERS, PART_SCALES,
    POSITIVE_RULES, SEARCH_BACKENDS, ClusterConfig, Config, DataConfig, EvalConfig, ModelConfig, SCLConfig, SearchConfig, TrainConfig,
)
from reidlib.errors import ConfigError

__all__ = [
    "CAMERA_DEBIAS", "FAISS_INDEXES", "LAYOUTS", "LR_SCHEDULES", "METHODS", "MIXTURE_WRITERS", "OPTIMIZERS",
    "PART_SCALES", "POSITIVE_RULES", "SEARCH_BACKENDS",
    "ClusterConfig", "Config", "DataConfig", "EvalConfig", "ModelConfig", "SCLConfig", "SearchConfig", "TrainConfig",
    "RENAMED_KEYS", "SECTIONS", "field_index", "apply_overrides", "parse_set", "load_config", "config_from_dict",
    "save_config", "validate",
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
        raise ConfigError(
            f"config key {key!r} expects {annotation.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def apply_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """Return a copy of ``cfg`` with ``overrides`` (short or dotted keys) applied and validated."""
    changes: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, name = _resolve_key(key)
        hints = typing.get_type_hints(SECTIONS[section])
        changes.setdefault(section, {})[name] = _check_type(f"{section}.{name}", value, hints[name])
    new = replace(cfg, **{s: replace(getattr(cfg, s), **c) for s, c in changes.items()})
    validate(new)
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
            raise ConfigError(
                f"{source}: unknown config section {section!r}; valid: {', '.join(SECTIONS)}"
            )
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


def _in_unit(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"config key {key!r} must lie in [0, 1], got {value}")


def _one_of(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"config key {key!r} must be one of {', '.join(choices)}; got {value!r}")


def validate(cfg: Config) -> None:
    """Check value ranges that do not depend on the data (k >= N is checked when training starts)."""
    s, t, d, m = cfg.scl, cfg.train, cfg.data, cfg.model
    for name in ("lambda_t", "lambda_p", "lambda_g", "bank_momentum"):
        _in_unit(f"scl.{name}", getattr(s, name))
    if cfg.eval.test_lambda_g is not None:
        _in_unit("eval.test_lambda_g", cfg.eval.test_lambda_g)
    if s.lambda_c < 0:
        raise ConfigError(f"config key 'scl.lambda_c' must be >= 0, got {s.lambda_c}")
    if s.temperature <= 0:
        raise ConfigError(f"config key 'scl.temperature' must be > 0, got {s.temperature}")
    if s.alpha < 0:
        raise ConfigError(f"config key 'scl.alpha' must be >= 0, got {s.alpha}")
    if s.k < 0:
        raise ConfigError(f"config key 'scl.k' must be >= 0, got {s.k}")
    if s.m is not None and s.m < 0:
        raise ConfigError(f"config key 'scl.m' must be >= 0 or null (all negatives), got {s.m}")
    if s.warmup_epochs < 0:
        raise ConfigError(f"config key 'scl.warmup_epochs' must be >= 0, got {s.warmup_epochs}")
    _one_of("scl.mixture_update", s.mixture_update, ("positives", "own"))
    _one_of("scl.mixture_init", s.mixture_init, ("zeros", "features"))
    _one_of("scl.mixture_writers", s.mixture_writers, MIXTURE_WRITERS)
    _one_of("scl.part_scale", s.part_scale, PART_SCALES)
    _one_of("scl.positive_rule", s.positive_rule, POSITIVE_RULES)
    _one_of("scl.camera_debias", s.camera_debias, CAMERA_DEBIAS)
    for name in ("reciprocal_k", "jaccard_k1", "jaccard_k2", "ca_k_intra", "ca_k_inter", "part_agreement_k"):
        if getattr(s, name) < 1:
            raise ConfigError(f"config key 'scl.{name}' must be >= 1, got {getattr(s, name)}")
    if not 0 <= s.part_agreement <= m.num_parts:
        raise ConfigError(
            f"config key 'scl.part_agreement' must lie in [0, model.num_parts = {m.num_parts}], got {s.part_agreement}"
        )
    if not 0 < s.jaccard_eps <= 1:
        raise ConfigError(f"config key 'scl.jaccard_eps' must lie in (0, 1], got {s.jaccard_eps}")
    if s.lambda_c_start is not None and s.lambda_c_start < 0:
        raise ConfigError(f"config key 'scl.lambda_c_start' must be >= 0 or null, got {s.lambda_c_start}")
    _one_of("scl.bank_dtype", s.bank_dtype, ("float32", "float16"))
    _validate_search(cfg.search)
    _one_of("train.method", t.method, METHODS)
    _validate_cluster(cfg.cluster, t)
    _one_of("train.optimizer", t.optimizer, OPTIMIZERS)
    _one_of("train.lr_schedule", t.lr_schedule, LR_SCHEDULES)
    _in_unit("train.lr_step", t.lr_step)
    _in_unit("train.lr_gamma", t.lr_gamma)
    _one_of("data.layout", d.layout, LAYOUTS)
    for key, value in (
        ("train.epochs", t.epochs),
        ("train.threads", t.threads),
        ("train.checkpoint_every", t.checkpoint_every),
        ("data.pad", d.pad),
        ("data.num_workers", d.num_workers),
        ("data.max_frames", d.max_frames),
        ("eval.eval_every", cfg.eval.eval_every),
    ):
        if value < 0:
            raise ConfigError(f"config key {key!r} must be >= 0, got {value}")
    for key, value in (
        ("train.batch_size", t.batch_size),
        ("eval.eval_batch_size", cfg.eval.eval_batch_size),
        ("data.height", d.height),
        ("data.width", d.width),
        ("data.sample_frames", d.sample_frames),
        ("model.feat_dim", m.feat_dim),
        ("model.num_parts", m.num_parts),
    ):
        if value <= 0:
            raise ConfigError(f"config key {key!r} must be > 0, got {value}")
    if t.lr <= 0:
        raise ConfigError(f"config key 'train.lr' must be > 0, got {t.lr}")
    _in_unit("data.random_erasing", d.random_erasing)
    _in_unit("data.color_jitter", d.color_jitter)
    if m.feat_dim % m.num_parts:
        raise ConfigError(
            f"model.feat_dim ({m.feat_dim}) must be divisible by model.num_parts ({m.num_parts})"
        )


def _validate_search(c: SearchConfig) -> None:
    _one_of("search.backend", c.backend, SEARCH_BACKENDS)
    _one_of("search.faiss_index", c.faiss_index, FAISS_INDEXES)
    for name in ("faiss_dim", "nlist"):
        if getattr(c, name) < 0:
            raise ConfigError(f"config key 'search.{name}' must be >= 0, got {getattr(c, name)}")
    if c.nprobe < 1:
        raise ConfigError(f"config key 'search.nprobe' must be >= 1, got {c.nprobe}")
    if c.rerank < 1:
        raise ConfigError(f"config key 'search.rerank' must be >= 1, got {c.rerank}")
    if c.nlist and c.nprobe > c.nlist:
        raise ConfigError(f"config key 'search.nprobe' ({c.nprobe}) must be <= search.nlist ({c.nlist})")


def _validate_cluster(c: ClusterConfig, t: TrainConfig) -> None:
    if not 0 < c.cluster_eps < 1:  # pairs left out of the sparse distance lie at 1: never neighbours
        raise ConfigError(f"config key 'cluster.cluster_eps' must lie in (0, 1), got {c.cluster_eps}")
    for name in ("min_samples", "cluster_k1", "cluster_k2", "num_instances"):
        if getattr(c, name) < 1:
            raise ConfigError(f"config key 'cluster.{name}' must be >= 1, got {getattr(c, name)}")
    if c.cluster_k2 > c.cluster_k1:
        raise ConfigError(
            f"config key 'cluster.cluster_k2' ({c.cluster_k2}) must be <= cluster.cluster_k1 ({c.cluster_k1})"
        )
    _in_unit("cluster.cluster_momentum", c.cluster_momentum)
    if c.cluster_temperature <= 0:
        raise ConfigError(f"config key 'cluster.cluster_temperature' must be > 0, got {c.cluster_temperature}")
    if c.cluster_iters < 0:
        raise ConfigError(f"config key 'cluster.cluster_iters' must be >= 0, got {c.cluster_iters}")
    if t.method == "cluster_contrast" and t.batch_size % c.num_instances:
        raise ConfigError(
            f"config key 'cluster.num_instances' ({c.num_instances}) must divide train.batch_size "
            f"({t.batch_size}): a batch holds batch_size / num_instances clusters"
        )
