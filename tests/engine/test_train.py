"""End to end on the tiny synthetic set: run-dir files, falling loss, resume, refusals, CLI errors."""

import json

import pytest
import torch

from reidlib.cli import main
from reidlib.config import load_config
from reidlib.engine.trainer import train
from reidlib.errors import RunDirError
from reidlib.evaluation.evaluator import evaluate_run
from reidlib.utils import runs
from tests.helpers import TINY, tiny_cfg


def test_run_dir_files_and_diagnostics(tiny_synthetic, tmp_path):
    metrics = train(tiny_cfg(tiny_synthetic), tmp_path / "run")
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "metrics.jsonl", "metrics.json", "last.pt", "features.npz"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert set(metrics) >= {"mAP", "rank1", "rank5", "rank10", "protocol"}
    assert metrics["protocol"] == "market1501" and metrics["epochs"] == 3
    assert set(metrics["by_feature"]) == {"combined", "global", "parts"}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics
    rows = runs.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[0]["warmup"] and rows[0]["pos_precision"] is None  # warm-up: no neighbours
    for r in rows[1:]:
        assert 0.0 <= r["pos_precision"] <= 1.0 and 0.0 <= r["pos_same_camera"] <= 1.0
        assert 0.0 <= r["neg_false_rate"] <= 1.0
    feats = dict(__import__("numpy").load(tmp_path / "run" / "features.npz"))
    assert feats["query_global"].shape[1] == 32 and feats["gallery_parts"].shape[1:] == (4, 8)
    assert len(feats["query_paths"]) == len(feats["query_pids"])
    again = evaluate_run(tmp_path / "run")
    assert again["mAP"] == pytest.approx(metrics["mAP"], abs=1e-6)


@pytest.mark.slow
def test_loss_falls(tiny_synthetic, tmp_path):
    # The target moves (the banks are written every step), so compare the first selective epoch,
    # picked from a randomly initialised model, with the last two.
    train(tiny_cfg(tiny_synthetic, epochs=8, warmup_epochs=1), tmp_path / "run")
    losses = [r["loss"] for r in runs.read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert sum(losses[-2:]) / 2 < losses[1] - 0.5, losses


def test_untrained_evaluation(tiny_synthetic, tmp_path):
    metrics = train(tiny_cfg(tiny_synthetic, epochs=0), tmp_path / "run")
    assert metrics["epochs"] == 0 and 0.0 <= metrics["mAP"] <= 1.0
    assert runs.read_jsonl(tmp_path / "run" / "metrics.jsonl") == []


def test_other_config_is_refused_and_nothing_overwritten(tiny_synthetic, tmp_path):
    train(tiny_cfg(tiny_synthetic, epochs=1), tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    with pytest.raises(RunDirError, match=r"scl.k: 2 -> 3"):
        train(tiny_cfg(tiny_synthetic, epochs=1, k=3), tmp_path / "run")
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    with pytest.raises(RunDirError, match="not empty"):
        train(tiny_cfg(tiny_synthetic, epochs=1), tmp_path / "busy")


def cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_train_and_errors(tiny_synthetic, tmp_path, capsys):
    base = ["train", "--data", str(tiny_synthetic), "--run-dir", str(tmp_path / "run")]
    sets = ["--set"] + [f"{key}={value}" for key, value in {**TINY, "epochs": 1}.items()]  # one --set, many
    code, out, err = cli(base + sets, capsys)
    assert code == 0 and "protocol: market1501" in out and "combined" in out
    code, out, err = cli(["evaluate", "--run-dir", str(tmp_path / "run"), "--camera-aware"], capsys)
    assert code == 0 and "NON-STANDARD" in out

    code, _, err = cli(base + ["--set", "kk=3"], capsys)
    assert code == 2 and "unknown config key 'kk'" in err and "Traceback" not in err
    code, _, err = cli(base + ["--set", "k=seven"], capsys)
    assert code == 2 and "'scl.k' expects int" in err
    code, _, err = cli(base + sets + ["--set", "k=500"], capsys)
    assert code == 2 and "scl.k + scl.m" in err
    code, _, err = cli(["train", "--data", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "r2")], capsys)
    assert code == 2 and "dataset root not found" in err and "nowhere" in err
    assert not (tmp_path / "r2").exists()  # nothing written for a bad input
    code, _, err = cli(base + sets + ["--set", "batch_size=4096"], capsys)
    assert code == 2 and "batch_size" in err


@pytest.mark.parametrize(
    "writers,scale",
    [
        ("both", "sqrt_p"),
        ("global", "sqrt_p"),
        ("parts", "sqrt_p"),
        ("both", "unit"),
        ("combined", "unit_writes"),
        ("combined", "sqrt_p"),
        ("both", "unit_loss"),
    ],
)
def test_mixture_writers(tiny_synthetic, tmp_path, writers, scale):
    # mixture_init=features writes each slot once, as a step does, so the bank shows who wrote it
    cfg = tiny_cfg(tiny_synthetic, epochs=0, mixture_init="features", mixture_writers=writers, part_scale=scale)
    train(cfg, tmp_path / "run")
    state = runs.load_checkpoint(tmp_path / "run")
    g = state["global_bank"]["features"]  # (N, D), unit rows
    p_cat = state["part_bank"]["features"].flatten(1)  # (N, D), norm sqrt(P): P unit stripes
    if scale in ("unit", "unit_writes"):
        p_cat = p_cat / 2.0  # sqrt(P), P = 4
    unit = torch.nn.functional.normalize
    # "both": fill with g, then X <- normalise((X + p) / 2), i.e. normalise(g + p) for unit-norm g
    want = {
        "global": g,
        "parts": unit(p_cat, dim=1),
        "both": unit(g + p_cat, dim=1),
        "combined": unit(g + p_cat, dim=1),
    }[writers]
    assert torch.allclose(state["mixture_bank"]["features"], want, atol=1e-5)


def test_learning_rate_schedules():
    from reidlib.engine.state import learning_rate

    step = load_config(
        overrides={"lr": 1.0, "epochs": 10, "lr_schedule": "step", "lr_step": 0.7, "lr_gamma": 0.1}
    ).train
    assert [learning_rate(step, e) for e in range(10)] == [1.0] * 7 + [pytest.approx(0.1)] * 3
    cosine = load_config(overrides={"lr": 1.0, "epochs": 4, "lr_schedule": "cosine"}).train
    assert [learning_rate(cosine, e) for e in range(4)] == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466])


def test_part_loss_scale(tiny_synthetic):
    """part_scale divides the stripes by sqrt(P) in the loss only where it says so."""
    from reidlib.methods.memory import part_features

    p = torch.nn.functional.normalize(torch.randn(3, 4, 8), dim=-1)  # P = 4 unit stripes
    for scale, write_norm, loss_norm in [
        ("sqrt_p", 2.0, 2.0),
        ("unit", 1.0, 1.0),
        ("unit_writes", 1.0, 2.0),
        ("unit_loss", 2.0, 1.0),
    ]:
        s = load_config(overrides={"part_scale": scale}).scl
        assert part_features(s, p, "write").norm(dim=1) == pytest.approx(torch.full((3,), write_norm))
        assert part_features(s, p, "loss").norm(dim=1) == pytest.approx(torch.full((3,), loss_norm))


@pytest.mark.parametrize(
    "overrides",
    [
        {"positive_rule": "cycle"},
        {"positive_rule": "ca_jaccard", "k": 3},
        {"camera_debias": "mean_std", "part_agreement": 2},
        {"lambda_c_start": 0.0, "positive_rule": "reciprocal"},
    ],
)
def test_selection_rules_train_and_report(tiny_synthetic, tmp_path, overrides):
    """Every rule trains end to end with cached images, and the diagnostics are in range."""
    train(tiny_cfg(tiny_synthetic, cache_images=True, **overrides), tmp_path / "run")
    rows = runs.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    for r in rows[1:]:
        for key in ("pos_precision", "pos_recall", "pos_same_camera"):
            assert r[key] is None or 0.0 <= r[key] <= 1.0, key
        assert 0.0 <= r["pos_per_anchor"] <= overrides.get("k", TINY["k"])


def test_cached_images_train_like_files(tiny_synthetic, tmp_path):
    """Decoding once and augmenting the cached tensor gives the same untrained figures as the files
    (evaluation has no randomness; the resize is the same operation)."""
    from_files = train(tiny_cfg(tiny_synthetic, epochs=0), tmp_path / "files")
    cached = train(tiny_cfg(tiny_synthetic, epochs=0, cache_images=True), tmp_path / "cached")
    assert cached["mAP"] == pytest.approx(from_files["mAP"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_faiss_selection_trains_like_the_exact_path(tiny_synthetic, tmp_path, index):
    # nprobe = nlist: IVF visits every cell and re-ranks exactly, so it is exact too
    exact = train(tiny_cfg(tiny_synthetic, search="torch", deterministic=True), tmp_path / "torch")
    faiss_cfg = tiny_cfg(
        tiny_synthetic, search="faiss", faiss_index=index, nlist=4, nprobe=4, faiss_dim=0, deterministic=True
    )
    assert train(faiss_cfg, tmp_path / index) == exact
    rows = [runs.read_jsonl(tmp_path / name / "metrics.jsonl") for name in ("torch", index)]
    assert [r["pos_precision"] for r in rows[0]] == [r["pos_precision"] for r in rows[1]]


@pytest.mark.slow
def test_channels_last_scores_like_contiguous(tiny_synthetic, tmp_path):
    """The NHWC layout changes speed, not the model: the untrained figures agree."""
    plain = train(tiny_cfg(tiny_synthetic, epochs=0), tmp_path / "plain")
    nhwc = train(tiny_cfg(tiny_synthetic, epochs=0, channels_last=True), tmp_path / "nhwc")
    assert nhwc["mAP"] == pytest.approx(plain["mAP"], abs=1e-4)
    trained = train(tiny_cfg(tiny_synthetic, epochs=2, channels_last=True), tmp_path / "trained")
    assert 0.0 <= trained["mAP"] <= 1.0


def test_flip_test(tiny_synthetic, tmp_path, capsys):
    """eval.flip_test sums each crop's features with its mirror image's: the features no longer
    change when the crops are mirrored, each stripe stays a stripe, and the run's figures say so."""
    from reidlib.evaluation.features import view_features
    from reidlib.model import Features, make_model

    cfg = tiny_cfg(tiny_synthetic)
    torch.manual_seed(0)
    model = make_model(cfg, torch.device("cpu")).eval()
    images = torch.rand(3, 3, 64, 32)
    with torch.no_grad():
        plain = view_features(model, images, flip=False)
        mirrored = view_features(model, images.flip(3), flip=False)
        both = view_features(model, images, flip=True)
        both_mirrored = view_features(model, images.flip(3), flip=True)
    assert not torch.allclose(plain.global_, mirrored.global_, atol=1e-4)  # the model is not mirror-invariant
    expected = Features(plain.global_ + mirrored.global_, plain.parts + mirrored.parts)
    torch.testing.assert_close(both.global_, torch.nn.functional.normalize(expected.global_, dim=1))
    torch.testing.assert_close(both.parts, torch.nn.functional.normalize(expected.parts, dim=2))
    torch.testing.assert_close(both.global_, both_mirrored.global_, atol=1e-5, rtol=0)
    torch.testing.assert_close(both.parts, both_mirrored.parts, atol=1e-5, rtol=0)

    metrics = train(tiny_cfg(tiny_synthetic, epochs=1), tmp_path / "run")
    assert metrics["flip_test"] is False
    flipped = evaluate_run(tmp_path / "run", flip_test=True)
    assert flipped["flip_test"] is True and flipped["mAP"] != metrics["mAP"]
    assert evaluate_run(tmp_path / "run")["mAP"] == pytest.approx(metrics["mAP"], abs=1e-6)
    code, out, _ = cli(["evaluate", "--run-dir", str(tmp_path / "run"), "--flip-test"], capsys)
    assert code == 0 and "flip test" in out


def test_test_lambda_g(tiny_synthetic, tmp_path):
    """eval.test_lambda_g sets the combined figure's global share, apart from the selection's."""
    from reidlib.errors import ConfigError
    from reidlib.evaluation.evaluator import eval_lambda_g, evaluate_features

    gen = torch.Generator().manual_seed(0)
    feats = {}
    for split in ("query", "gallery"):
        g = torch.nn.functional.normalize(torch.randn(12, 8, generator=gen), dim=1)
        p = torch.nn.functional.normalize(torch.randn(12, 2, 4, generator=gen), dim=2)
        feats[split] = {
            "global": g.numpy(),
            "parts": p.numpy(),
            "pids": torch.arange(12).numpy() % 4,
            "camids": torch.full((12,), 0 if split == "query" else 1).numpy(),
        }
    default = tiny_cfg(tiny_synthetic, lambda_g=0.3)
    assert eval_lambda_g(default) == 0.3
    for share, same_as in ((0.0, "parts"), (1.0, "global")):
        cfg = tiny_cfg(tiny_synthetic, lambda_g=0.3, test_lambda_g=share)
        assert eval_lambda_g(cfg) == share and cfg.scl.lambda_g == 0.3
        res = evaluate_features(feats["query"], feats["gallery"], cfg)
        assert res["combined"]["lambda_g"] == share
        assert res["combined"]["mAP"] == res[same_as]["mAP"]
    mixed = evaluate_features(feats["query"], feats["gallery"], default)["combined"]
    assert mixed["lambda_g"] == 0.3 and mixed["mAP"] not in (0.0, 1.0)
    with pytest.raises(ConfigError, match="eval.test_lambda_g"):
        tiny_cfg(tiny_synthetic, test_lambda_g=1.5)
