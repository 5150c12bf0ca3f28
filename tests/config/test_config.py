"""Config: overrides by short or dotted key, clear errors, round trips, shipped files load."""

from dataclasses import replace

import pytest

from reidlib.config import (
    RENAMED_KEYS,
    Config,
    SearchConfig,
    config_from_dict,
    field_index,
    load_config,
    parse_set,
    save_config,
)
from reidlib.errors import ConfigError
from tests.helpers import ROOT


def test_short_and_dotted_keys():
    cfg = load_config(overrides={"epochs": 3, "scl.k": 0, "m": None, "lr": 1})
    assert (cfg.train.epochs, cfg.scl.k, cfg.scl.m, cfg.train.lr) == (3, 0, None, 1.0)


def test_documented_overrides_work_as_written():
    cfg = load_config(overrides=parse_set(["epochs=0", "seed=7", "deterministic=true", "device=cpu"]))
    assert (cfg.train.epochs, cfg.train.seed, cfg.train.deterministic, cfg.train.device) == (0, 7, True, "cpu")


def test_parse_set_reads_yaml_scalars():
    got = parse_set(["m=null", "lr=1e-3", "pretrained=weights/x.pt", "flip=false"])
    assert got == {"m": None, "lr": "1e-3", "pretrained": "weights/x.pt", "flip": False}
    assert load_config(overrides=got).train.lr == 0.001


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"foo": 1}, "unknown config key 'foo'"),
        ({"scl.nope": 1}, "unknown config key 'scl.nope'"),
        ({"k": "seven"}, "'scl.k' expects int, got str"),
        ({"k": True}, "'scl.k' expects int, got bool"),
        ({"deterministic": "yes"}, "'train.deterministic' expects bool"),
        ({"lambda_t": 1.5}, "'scl.lambda_t' must lie in [0, 1]"),
        ({"lambda_c": -0.1}, "'scl.lambda_c' must be >= 0"),
        ({"temperature": 0}, "'scl.temperature' must be > 0"),
        ({"m": -1}, "'scl.m' must be >= 0"),
        ({"k": -1}, "'scl.k' must be >= 0"),
        ({"batch_size": 0}, "'train.batch_size' must be > 0"),
        ({"feat_dim": 100, "num_parts": 8}, "divisible"),
        ({"optimizer": "lbfgs"}, "'train.optimizer' must be one of"),
        ({"positive_rule": "dbscan"}, "'scl.positive_rule' must be one of knn, reciprocal, cycle, jaccard, ca_jaccard"),
        ({"part_scale": "half"}, "'scl.part_scale' must be one of"),
        ({"camera_debias": "yes"}, "'scl.camera_debias' must be one of"),
        ({"mixture_writers": "all"}, "'scl.mixture_writers' must be one of"),
        (
            {"part_agreement": 5, "num_parts": 4, "feat_dim": 32},
            "'scl.part_agreement' must lie in [0, model.num_parts = 4]",
        ),
        ({"reciprocal_k": 0}, "'scl.reciprocal_k' must be >= 1"),
        ({"jaccard_eps": 0.0}, "'scl.jaccard_eps' must lie in (0, 1]"),
        ({"lambda_c_start": -1.0}, "'scl.lambda_c_start' must be >= 0"),
        ({"lr_schedule": "linear"}, "'train.lr_schedule' must be one of constant, cosine, step"),
        ({"lr_step": 1.5}, "'train.lr_step' must lie in [0, 1]"),
        ({"cache_images": "yes"}, "'data.cache_images' expects bool"),
        ({"method": "dbscan"}, "'train.method' must be one of scl, cluster_contrast"),
        ({"cluster_eps": 1.0}, "'cluster.cluster_eps' must lie in (0, 1)"),
        ({"min_samples": 0}, "'cluster.min_samples' must be >= 1"),
        ({"cluster_k1": 0}, "'cluster.cluster_k1' must be >= 1"),
        ({"cluster_k1": 5, "cluster_k2": 6}, "'cluster.cluster_k2' (6) must be <= cluster.cluster_k1 (5)"),
        ({"cluster_momentum": 1.5}, "'cluster.cluster_momentum' must lie in [0, 1]"),
        ({"cluster_temperature": 0}, "'cluster.cluster_temperature' must be > 0"),
        ({"num_instances": 0}, "'cluster.num_instances' must be >= 1"),
        ({"cluster_iters": -1}, "'cluster.cluster_iters' must be >= 0"),
        (
            {"method": "cluster_contrast", "batch_size": 8, "num_instances": 3},
            "'cluster.num_instances' (3) must divide train.batch_size (8)",
        ),
    ],
)
def test_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert message in str(err.value)


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scl:\n  kk: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml: unknown config key 'scl.kk'"):
        load_config(bad)
    bad.write_text("sclx:\n  k: 3\n")
    with pytest.raises(ConfigError, match="unknown config section 'sclx'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip(tmp_path):
    cfg = load_config(overrides={"k": 3, "m": None, "arch": "resnet_mini", "pretrained": "x.pt"})
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


OLD_SEARCH_KEYS = {  # the search settings as scl held them, and their values here
    "scl.search": "faiss",
    "scl.faiss_index": "flat",
    "scl.faiss_dim": 0,
    "scl.nlist": 16,
    "scl.nprobe": 8,
    "scl.rerank": 1.5,
}
NEW_SEARCH = SearchConfig(backend="faiss", faiss_index="flat", faiss_dim=0, nlist=16, nprobe=8, rerank=1.5)


def test_renamed_keys_point_at_fields():
    for old, new in RENAMED_KEYS.items():
        section, name = new.split(".")
        assert old not in field_index() and name in Config().to_dict()[section], old


def test_old_search_keys_as_overrides():
    assert load_config(overrides=OLD_SEARCH_KEYS).search == NEW_SEARCH
    assert load_config(overrides={"search": "torch"}).search.backend == "torch"  # the old short name
    assert load_config(overrides=parse_set(["scl.search=faiss"])).search.backend == "faiss"
    with pytest.raises(ConfigError, match=r"'search\.nprobe' must be >= 1"):
        load_config(overrides={"scl.nprobe": 0})  # the error names the key as it is now


def test_old_search_keys_in_a_yaml_file(tmp_path):
    path = tmp_path / "old.yaml"
    body = "".join(f"  {key.split('.')[1]}: {value}\n" for key, value in OLD_SEARCH_KEYS.items())
    path.write_text("scl:\n  k: 3\n" + body)
    cfg = load_config(path)
    assert cfg.search == NEW_SEARCH and cfg.scl.k == 3


def test_old_saved_config_dict_loads():
    """A config.yaml saved before the search section existed rebuilds the same Config."""
    tree = Config().to_dict()
    del tree["search"]
    tree["scl"].update({key.split(".")[1]: value for key, value in OLD_SEARCH_KEYS.items()})
    cfg = config_from_dict(tree)
    assert cfg.search == NEW_SEARCH and cfg.scl == Config().scl
    assert config_from_dict(cfg.to_dict()) == cfg


def test_short_names_are_unique():
    index = field_index()
    assert len(index) == sum(len(v) for v in Config().to_dict().values())


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_load(name):
    load_config(ROOT / "configs" / name)


def test_paper_config_is_the_papers():
    cfg = load_config(ROOT / "configs" / "paper.yaml")
    s, t = cfg.scl, cfg.train
    assert (s.k, s.m, s.temperature, s.lambda_t, s.alpha, s.lambda_p, s.lambda_g, s.lambda_c) == (
        7,
        500,
        0.1,
        0.5,
        1.75,
        0.5,
        0.5,
        0.05,
    )
    assert (t.lr, t.momentum, t.weight_decay, t.batch_size, s.warmup_epochs) == (1e-3, 0.9, 5e-4, 8, 3)
    assert (cfg.model.arch, cfg.model.num_parts, cfg.data.height, cfg.data.width) == ("resnet50", 8, 256, 128)
    # the public code's mixture bank and selection: both spaces write, stripes at norm sqrt(P), kNN
    assert (s.mixture_writers, s.part_scale, s.positive_rule, s.camera_debias) == ("both", "sqrt_p", "knn", "none")
    assert (s.part_agreement, s.lambda_c_start) == (0, None)


def test_cluster_contrast_configs_are_the_published_ones():
    """configs/cluster-contrast.yaml: the paper's and public code's settings; the CPU config: the
    same clustering and memory, with configs/real-cpu.yaml's start and budget."""
    cfg = load_config(ROOT / "configs" / "cluster-contrast.yaml")
    c, t = cfg.cluster, cfg.train
    assert (t.method, cfg.model.arch, cfg.data.height, cfg.data.width) == ("cluster_contrast", "resnet50", 256, 128)
    assert (c.cluster_eps, c.min_samples, c.cluster_k1, c.cluster_k2, c.cluster_momentum, c.cluster_temperature) == (
        0.6,
        4,
        30,
        6,
        0.1,
        0.05,
    )
    assert (t.batch_size // c.num_instances, c.num_instances, t.optimizer, t.lr, c.cluster_iters) == (
        16,
        16,
        "adam",
        3.5e-4,
        200,
    )
    assert cfg.eval.test_lambda_g == 1.0  # the headline distance is the trained global feature's
    cpu, real = (
        load_config(ROOT / "configs" / "cluster-contrast-cpu.yaml"),
        load_config(ROOT / "configs" / "real-cpu.yaml"),
    )
    assert cpu.data == real.data and cpu.model == real.model
    same = (
        "epochs",
        "batch_size",
        "optimizer",
        "lr",
        "weight_decay",
        "lr_schedule",
        "lr_step",
        "lr_gamma",
        "channels_last",
    )
    assert all(getattr(cpu.train, k) == getattr(real.train, k) for k in same)
    assert cpu.cluster == replace(c, num_instances=4, cluster_iters=0)
    assert cpu.train.method == "cluster_contrast" and cpu.eval.test_lambda_g == 1.0
    assert cpu.eval.flip_test == real.eval.flip_test  # the same test-time choices as SCL's recipe


def test_layout_choices_are_the_readers():
    """data.layout's choices are auto and one per reader, so a new reader cannot be left out."""
    from reidlib.config import LAYOUTS
    from reidlib.data.layouts import READERS

    assert LAYOUTS == ("auto", *READERS)
