"""Experiment configuration: frozen dataclasses, composed once, never global.

A :class:`Config` has six sections (``data``, ``model``, ``scl``, ``search``, ``train``, ``eval``).
Every field name is unique across the sections, so an override may name a field by its short name
(``k=0``, ``epochs=3``) or by its full dotted key (``scl.k=0``); notebooks use the short names as
papermill parameters. An unknown key, a wrong type or an out-of-range value raises
:class:`~reidlib.errors.ConfigError` naming the key. The resolved config is saved beside every run
as ``config.yaml``; keys renamed since (:data:`RENAMED_KEYS`) still load.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from reidlib.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how they are turned into tensors."""

    data_dir: str = ""  # dataset root; the command line's --data sets it
    layout: str = "auto"  # auto | market1501 | dukemtmc | msmt17 | cuhk03
    height: int = 256
    width: int = 128
    flip: bool = True
    pad: int = 10
    random_erasing: float = 0.5
    color_jitter: float = 0.0  # brightness / contrast / saturation jitter strength (0: the paper's)
    num_workers: int = 0
    # decode and resize every image once and hold the uint8 crops in memory (24 KiB each at
    # 128x64): an epoch then spends no time decoding JPEGs or resizing
    cache_images: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """The backbone and the global / stripe heads (see :mod:`reidlib.model`)."""

    arch: str = "resnet50"  # resnet50 | resnet18 | mobilenet_v2 | resnet_mini
    feat_dim: int = 2048  # D; each of the P stripes gets D / P
    num_parts: int = 8  # P
    pretrained: str | None = None  # None | "imagenet" | a local file
    last_stride: int = 1


@dataclass(frozen=True)
class SCLConfig:
    """Selective contrastive learning: selection, loss weights and the three memory banks."""

    k: int = 7  # K positives besides the image's own slot
    m: int | None = 500  # M selected negatives; None = every remaining slot ("all negatives")
    temperature: float = 0.1  # tau
    lambda_t: float = 0.5  # weight of the own slot among the positives
    alpha: float = 1.75  # scale of the neighbours' weight alpha * (1 - lambda_t) / K
    lambda_p: float = 0.5  # part loss weight; the global loss gets 1 - lambda_p
    lambda_g: float = 0.5  # global share of the selection distance; parts get 1 - lambda_g
    lambda_c: float = 0.05  # distance added to same-camera slots (cross-camera encouragement)
    bank_momentum: float = 0.5  # global / part bank: slot <- normalise(mu * old + (1 - mu) * new)
    # storage of the three banks: float32 | float16 (half the memory: 11.4 GiB instead of 22.9 for
    # 1M slots of D = 2048; every read converts to float32, every write rounds to float16)
    bank_dtype: str = "float32"
    mixture_update: str = "positives"  # positives (public code) | own
    mixture_init: str = "zeros"  # zeros (public code) | features
    # which features write the mixture bank: both (public code: g, then the concatenated stripes)
    # | combined (one write of normalise(g + stripes)) | global | parts. An arm that trains one
    # feature space alone should let only that space write, or its loss chases targets half made
    # of the other, untrained space.
    mixture_writers: str = "both"
    # where the concatenated stripes (norm sqrt(P)) meet the mixture bank: sqrt_p (public code:
    # as they are) | unit (divided by sqrt(P) in the writes and in the part loss's logits) |
    # unit_writes | unit_loss (one half each, to measure them apart)
    part_scale: str = "sqrt_p"
    warmup_epochs: int = 3  # own slot only, random negatives
    # Which of the k nearest candidates become positives (docs/method.md, "Beyond the paper"):
    # knn (the paper: all k) | reciprocal (those whose own reciprocal_k nearest hold the anchor)
    # | cycle (adaptive k, after MPLP: nearest first, up to the first that fails that check)
    # | jaccard | ca_jaccard (the k nearest by k-reciprocal Jaccard distance below jaccard_eps,
    # computed on the banks once per epoch; ca_ builds the reciprocal sets within and across cameras)
    positive_rule: str = "knn"
    reciprocal_k: int = 20  # reciprocal / cycle: length of each slot's own neighbour list
    pos_max_distance: float | None = None  # candidates farther than this (selection distance) are dropped
    jaccard_k1: int = 20  # jaccard: k of the k-reciprocal sets (Zhong et al. 2017)
    jaccard_k2: int = 6  # jaccard / ca_jaccard: local query expansion over this many neighbours
    jaccard_eps: float = 0.6  # jaccard / ca_jaccard: positives lie below this Jaccard distance
    ca_k_intra: int = 5  # ca_jaccard: reciprocal neighbours within the anchor's camera
    ca_k_inter: int = 20  # ca_jaccard: reciprocal neighbours across cameras
    # keep a candidate only if at least this many stripes also rank it among their
    # part_agreement_k nearest (after PPLR); 0 turns the check off
    part_agreement: int = 0
    part_agreement_k: int = 20
    # remove each camera's mean (mean) or mean and spread (mean_std) from the features before
    # the selection distance, then renormalise (camera debiasing); none keeps them as they are
    camera_debias: str = "none"
    # lambda_c schedule: linear from lambda_c_start at the first selecting epoch to lambda_c at
    # the last epoch; None keeps lambda_c throughout
    lambda_c_start: float | None = None


@dataclass(frozen=True)
class SearchConfig:
    """Neighbour search for selection (reidlib/search.py, reidlib/faiss_search.py).

    ``backend``: torch = exact; faiss = the index below, its candidates re-ranked exactly; auto =
    torch below search.AUTO_FAISS_MIN_SLOTS slots (and on an accelerator), faiss from there on.
    ``scl.m`` = null always searches exactly.
    """

    backend: str = "auto"  # auto | torch | faiss
    faiss_index: str = "ivf"  # flat (exact, N x (2D + cameras) float32; on the GPU with faiss-gpu) | ivf (CPU)
    faiss_dim: int = 256  # ivf: PCA to this many dims before indexing; 0 keeps all 2D + cameras
    nlist: int = 0  # ivf: k-means cells; 0 = 4 sqrt(N)
    nprobe: int = 256  # ivf: cells visited per anchor (nprobe >= nlist visits all; capped if nlist is 0)
    rerank: float = 2.0  # ivf: candidates re-ranked exactly per anchor, as a multiple of k + m + 1


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop."""

    epochs: int = 50
    batch_size: int = 8
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "constant"  # constant | cosine | step
    lr_step: float = 0.7  # step: the lr drops by lr_gamma once this share of the epochs is done
    lr_gamma: float = 0.1
    seed: int = 0
    deterministic: bool = False
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    # hold weights and images channels-last (NHWC): MobileNetV2's convolutions at 128x64 train
    # about 1.35x faster on this project's CPU (measured with one thread, batch 64)
    channels_last: bool = False
    checkpoint_every: int = 0  # also checkpoint every N steps within an epoch (0: at epoch ends only)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation of the test split (query -> gallery)."""

    eval_every: int = 0  # evaluate every N epochs (0: only at the end)
    eval_batch_size: int = 64
    camera_aware: bool = False  # add lambda_c to same-camera pairs at test time (non-standard)


@dataclass(frozen=True)
class Config:
    """A whole experiment. Build it with :func:`load_config`, never by mutating one."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    scl: SCLConfig = field(default_factory=SCLConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


# Each set of choices, listed once.
MIXTURE_WRITERS = ("both", "combined", "global", "parts")
PART_SCALES = ("sqrt_p", "unit", "unit_writes", "unit_loss")
POSITIVE_RULES = ("knn", "reciprocal", "cycle", "jaccard", "ca_jaccard")
CAMERA_DEBIAS = ("none", "mean", "mean_std")
SEARCH_BACKENDS = ("auto", "torch", "faiss")
FAISS_INDEXES = ("flat", "ivf")

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
    _one_of("train.optimizer", t.optimizer, ("sgd", "adam"))
    _one_of("train.lr_schedule", t.lr_schedule, ("constant", "cosine", "step"))
    _in_unit("train.lr_step", t.lr_step)
    _in_unit("train.lr_gamma", t.lr_gamma)
    _one_of("data.layout", d.layout, ("auto", "market1501", "dukemtmc", "msmt17", "cuhk03"))
    for key, value in (
        ("train.epochs", t.epochs),
        ("train.threads", t.threads),
        ("train.checkpoint_every", t.checkpoint_every),
        ("data.pad", d.pad),
        ("data.num_workers", d.num_workers),
        ("eval.eval_every", cfg.eval.eval_every),
    ):
        if value < 0:
            raise ConfigError(f"config key {key!r} must be >= 0, got {value}")
    for key, value in (
        ("train.batch_size", t.batch_size),
        ("eval.eval_batch_size", cfg.eval.eval_batch_size),
        ("data.height", d.height),
        ("data.width", d.width),
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
