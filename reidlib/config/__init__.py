"""Experiment configuration: frozen dataclasses, composed once, never global.

:mod:`reidlib.config.sections` holds one frozen dataclass per section and each set of choices;
:mod:`reidlib.config.loader` composes defaults, a YAML file and overrides into one validated
:class:`Config`. Every public name of both is re-exported here.
"""

from reidlib.config.loader import (
    RENAMED_KEYS,
    SECTIONS,
    apply_overrides,
    config_from_dict,
    field_index,
    load_config,
    parse_set,
    save_config,
)
from reidlib.config.sections import (
    CAMERA_DEBIAS,
    FAISS_INDEXES,
    GRAPH_INDEXES,
    LAYOUTS,
    LR_SCHEDULES,
    METHODS,
    MIXTURE_WRITERS,
    OPTIMIZERS,
    ORACLES,
    PART_SCALES,
    POSITIVE_RULES,
    SEARCH_BACKENDS,
    ClusterConfig,
    Config,
    DataConfig,
    EvalConfig,
    ModelConfig,
    SCLConfig,
    SearchConfig,
    TrainConfig,
)

__all__ = [
    "CAMERA_DEBIAS",
    "FAISS_INDEXES",
    "GRAPH_INDEXES",
    "LAYOUTS",
    "LR_SCHEDULES",
    "METHODS",
    "MIXTURE_WRITERS",
    "OPTIMIZERS",
    "ORACLES",
    "PART_SCALES",
    "POSITIVE_RULES",
    "SEARCH_BACKENDS",
    "ClusterConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "SCLConfig",
    "SearchConfig",
    "TrainConfig",
    "RENAMED_KEYS",
    "SECTIONS",
    "field_index",
    "apply_overrides",
    "parse_set",
    "load_config",
    "config_from_dict",
    "save_config",
]
