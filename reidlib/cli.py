"""The command line: ``python -m reidlib COMMAND ...``.

A thin layer: it parses arguments, calls the library, and turns a :class:`ReidlibError` into one
line on stderr and exit code 2. Library modules log; only this layer prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from reidlib.config import LAYOUTS
from reidlib.errors import ConfigError, DataError, ReidlibError
from reidlib.utils.interrupts import Interrupted

log = logging.getLogger(__name__)


def _cmd_synth(args: argparse.Namespace) -> None:
    from reidlib.data.synthetic import generate

    manifest = generate(args.out_dir, preset=args.preset, seed=args.seed)
    counts = manifest["counts"]
    print(
        f"wrote {args.out_dir}: preset {args.preset}, seed {args.seed}, "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
    )


def _cmd_describe(args: argparse.Namespace) -> None:
    from reidlib.data import format_summary, read_dataset

    print(format_summary(read_dataset(args.data_dir, layout=args.layout)))


def _cmd_sheet(args: argparse.Namespace) -> None:
    from reidlib.data import camera_names, read_dataset
    from reidlib.data.sheets import camera_sheet, identity_sheet, tracklet_sheet
    from reidlib.utils.runs import check_output

    check_output(args.out, overwrite=args.overwrite)
    data = read_dataset(args.data_dir, layout=args.layout)
    records = getattr(data, args.split)
    if args.frames:
        if not data.is_video:
            raise DataError(f"{data.root}: --frames draws tracklets, and this {data.name} set holds still images")
        out = tracklet_sheet(records, args.out, num_ids=args.ids, frames=args.frames, seed=args.seed)
    elif data.identities_known:
        out = identity_sheet(records, args.out, num_ids=args.ids, seed=args.seed)
    elif args.split != "train":
        raise DataError(f"{data.root}: camera folders have no {args.split} split (only train, without identities)")
    else:  # no identities: a column of crops per camera
        out = camera_sheet(records, args.out, camera_names(data), per_camera=args.ids, seed=args.seed)
    print(f"wrote {out}")


def _cmd_baseline(args: argparse.Namespace) -> None:
    from reidlib.data import read_dataset
    from reidlib.evaluation.baselines import format_baselines, run_baselines

    data = read_dataset(args.data, layout=args.layout)
    print(format_baselines(run_baselines(data, seed=args.seed), protocol="market1501"))


def train_config(run_dir: str, config: str | None, data: str | None, eval_data: str | None, sets: list[str]):
    """The config ``train`` runs with: a new run dir's from ``config`` (or the defaults) and the
    options; an existing run dir's own (its ``config.yaml``, so that ``train --run-dir R`` resumes
    R as it was), with the options on top (only ``epochs`` may change there)."""
    from reidlib.config import apply_overrides, load_config, parse_set
    from reidlib.utils import runs

    overrides = parse_set(sets)
    if data:
        overrides["data_dir"] = data
    if eval_data:
        overrides["eval_data"] = eval_data
    if config is None and (Path(run_dir) / runs.CONFIG).is_file():
        log.info("%s: resuming with its saved config", run_dir)
        return apply_overrides(runs.read_run_config(run_dir), overrides)
    if not data:
        raise ConfigError(f"--data is required: {run_dir} holds no {runs.CONFIG} to take the dataset from")
    return load_config(config, overrides)


def _cmd_train(args: argparse.Namespace) -> None:
    from reidlib.engine.trainer import train
    from reidlib.evaluation.evaluator import format_metrics

    cfg = train_config(args.run_dir, args.config, args.data, args.eval_data, args.set or [])
    metrics = train(cfg, args.run_dir)
    if metrics is not None:  # None on the processes other than rank 0 under torchrun
        print(format_metrics(metrics, f"{args.run_dir}"))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from reidlib.evaluation.evaluator import evaluate_run, format_metrics

    metrics = evaluate_run(args.run_dir, data_dir=args.data, camera_aware=args.camera_aware, flip_test=args.flip_test)
    print(format_metrics(metrics, f"{args.run_dir} on {metrics['eval_data']}"))
    print(f"recorded in {Path(args.run_dir) / 'evaluations.json'}")


def _cmd_compare(args: argparse.Namespace) -> None:
    from reidlib.evaluation.evaluator import format_comparison

    print(format_comparison(args.run_dirs))


def _cmd_screen(args: argparse.Namespace) -> None:
    from reidlib.data import read_dataset
    from reidlib.experiments.screen import format_screen, screen_rules

    rules = dict(parse_rule(text) for text in args.rule or [])
    data = read_dataset(args.data) if args.data else None
    rows = screen_rules(args.run_dir, rules, data=data)
    print(format_screen(rows, f"selection on the banks of {args.run_dir} (the run's last epoch)"))


def parse_rule(text: str) -> tuple[str, dict]:
    """``"LABEL: KEY=VALUE ..."`` (or ``"KEY=VALUE ..."``, labelled by itself) -> (label, overrides)."""
    from reidlib.config import parse_set

    label, sep, sets = text.partition(":")
    if not sep:
        label, sets = text, text
    if not sets.split():
        raise ConfigError(
            f"--rule {text!r} changes nothing: give KEY=VALUE after the label, e.g. 'band: negative_band=20'"
        )
    return label.strip(), parse_set(sets.split())


def _cmd_report(args: argparse.Namespace) -> None:
    from reidlib.reports.notebooks import report

    print(f"wrote {report(args.run_dir, args.out, overwrite=args.overwrite)}")


def _cmd_notebook(args: argparse.Namespace) -> None:
    import tempfile

    from reidlib.config import parse_set
    from reidlib.reports.notebooks import render

    params = parse_set(args.set or [])
    with tempfile.TemporaryDirectory() as tmp:
        out = render(args.name, params, args.out, out_notebook=f"{tmp}/executed.ipynb", overwrite=args.overwrite)
    print(f"wrote {out}")


def _cmd_embed(args: argparse.Namespace) -> None:
    from reidlib.retrieval.embedding import embed

    feats, run = embed(args.run_dir, args.images, args.out, overwrite=args.overwrite)
    known = set(feats["cameras"]) - {""}
    cameras = f"{len(known)} cameras" if known else "cameras unknown"
    print(
        f"wrote {args.out}: {len(feats['paths'])} images, global {feats['global'].shape[1]} + parts "
        f"{' x '.join(map(str, feats['parts'].shape[1:]))}, {cameras}; model of {args.run_dir} "
        f"(epoch {run.epoch}, sha256 {run.sha256[:12]})"
    )


def _cmd_query(args: argparse.Namespace) -> None:
    from reidlib.retrieval.page import count_pages
    from reidlib.retrieval.ranking import query

    ranking = query(
        args.run_dir,
        args.gallery,
        args.query,
        args.out,
        top=args.top,
        single_page_max=args.single_page_max,
        overwrite=args.overwrite,
    )
    num_q, k = ranking.order.shape
    pages = count_pages(num_q, args.single_page_max)
    page = "index.html (one page)" if not pages else f"index.html (of {pages} pages, thumbnails in thumbs/)"
    print(
        f"wrote {args.out}/{page} and {args.out}/ranks.csv: top {k} of the gallery for {num_q} "
        f"{'query' if num_q == 1 else 'queries'}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reidlib",
        description="Fully unsupervised person re-ID by selective contrastive learning.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write the procedural synthetic multi-camera dataset")
    p.add_argument("out_dir", help="output folder (Market-1501 layout; tracklets: DukeMTMC-VideoReID layout)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--preset",
        default="demo",
        choices=["tiny", "demo", "hard", "tracklets"],
        help="size and difficulty; tracklets: a small video (tracklet) dataset",
    )
    p.set_defaults(func=_cmd_synth)

    layouts = list(LAYOUTS)
    p = sub.add_parser(
        "describe", help="print ids / images / cameras per split of a dataset (camera folders: images per camera)"
    )
    p.add_argument("data_dir", help="dataset root")
    p.add_argument("--layout", default="auto", choices=layouts)
    p.set_defaults(func=_cmd_describe)

    p = sub.add_parser(
        "sheet", help="draw identities (rows) across cameras (columns) as a PNG; camera folders: crops per camera"
    )
    p.add_argument("data_dir", help="dataset root")
    p.add_argument("out", help="PNG file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG (else it is kept: error)")
    p.add_argument("--split", default="train", choices=["train", "query", "gallery"])
    p.add_argument(
        "--ids", type=int, default=8, help="identities to draw; camera folders: crops per camera (default 8)"
    )
    p.add_argument(
        "--frames",
        type=int,
        default=0,
        help="video sets: draw each tracklet of the identities as a row of this many frames (default 0: "
        "identities across cameras, each tracklet by its middle frame)",
    )
    p.add_argument("--layout", default="auto", choices=layouts)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_sheet)

    p = sub.add_parser(
        "baseline",
        help="score four untrained features: raw pixels, a colour histogram, a random ResNet-18, ImageNet MobileNetV2",
        description="Score four untrained features under the standard protocol: raw pixels, a colour histogram, "
        "a random ResNet-18 and ImageNet MobileNetV2 (the last when the 'pretrained' extra is installed).",
    )
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--layout", default="auto", choices=layouts)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_baseline)

    p = sub.add_parser(
        "train", help="train a run dir (a new one from --data and --config; one that exists resumes as it was)"
    )
    p.add_argument(
        "--data",
        help="dataset root, or camera folders ROOT/<camera>/... (its train split; labels unused); "
        "a run dir that exists already has its own",
    )
    p.add_argument(
        "--eval-data",
        metavar="DIR",
        help="a labelled set (known layout) whose query / gallery evaluate the run instead of --data's "
        "(config key eval.eval_data); camera folders have none, so without it such a run is not evaluated",
    )
    p.add_argument(
        "--run-dir",
        required=True,
        help="where config, metrics and checkpoints go; one that exists resumes with its own config "
        "(--set epochs=N continues a finished run)",
    )
    p.add_argument("--config", help="a YAML config for a new run dir, e.g. configs/demo.yaml")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        metavar="KEY=VALUE",
        help="override config fields: --set epochs=5 k=0 (repeatable)",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a run's checkpoint on the test split")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--data", help="dataset root (default: the one the run trained on)")
    p.add_argument(
        "--camera-aware",
        action="store_true",
        help="add lambda_c to same-camera pairs, as the original code did (non-standard protocol)",
    )
    p.add_argument(
        "--flip-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also embed each crop mirrored and sum the features (default: the run's eval.flip_test)",
    )
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("embed", help="write the features of a folder of crops with a run's model (.npz)")
    p.add_argument("--run-dir", required=True, help="a trained run dir (its newest checkpoint)")
    p.add_argument("--images", required=True, help="a folder of crops (searched recursively) or one image")
    p.add_argument("--out", required=True, help="features file to write, e.g. gallery.npz")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (else it is kept: error)")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("query", help="rank a gallery for query crops; write an HTML page of matches and ranks.csv")
    p.add_argument("--run-dir", required=True, help="a trained run dir (its newest checkpoint)")
    p.add_argument("--gallery", required=True, help="a features file of `embed` (.npz) or a folder of crops")
    p.add_argument("--query", required=True, help="one query image or a folder of them")
    p.add_argument("--top", type=int, default=10, help="matches per query (default 10)")
    p.add_argument(
        "--single-page-max",
        type=int,
        default=500,  # reidlib.retrieval.page.SINGLE_PAGE_MAX (the library is imported when the command runs)
        metavar="N",
        help="up to N queries (default 500), index.html is one self-contained page; above, it lists pages "
        "of 200 queries (page-0001.html, ...) that show thumbnails from thumbs/",
    )
    p.add_argument("--out", required=True, help="folder for index.html (and its pages) and ranks.csv")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (else it is kept: error)")
    p.set_defaults(func=_cmd_query)

    p = sub.add_parser(
        "report", help="run the report notebooks on a finished run dir (only read) and write one HTML page"
    )
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", help="HTML file (default: <run dir name>.html in the current folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (else it is kept: error)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("notebook", help="run one notebook with papermill and export it as HTML")
    p.add_argument("name", help="a notebook of notebooks/, e.g. 00_walkthrough")
    p.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE", help="notebook parameters")
    p.add_argument("--out", required=True, help="HTML file to write, e.g. reports/walkthrough.html")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (else it is kept: error)")
    p.set_defaults(func=_cmd_notebook)

    p = sub.add_parser(
        "screen",
        help="selection rules scored on a finished SCL run's banks, side by side, before training any",
    )
    p.add_argument("--run-dir", required=True, help="a finished SCL run dir (its last.pt and config.yaml)")
    p.add_argument(
        "--rule",
        action="append",
        metavar="'LABEL: KEY=VALUE ...'",
        help="a rule as config overrides, e.g. 'band 20: negative_band=20' (repeat for more)",
    )
    p.add_argument("--data", help="the run's dataset dir, when it is no longer where its config says")
    p.set_defaults(func=_cmd_screen)

    p = sub.add_parser("compare", help="print the final figures of run dirs side by side")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.set_defaults(func=_cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = int(os.environ.get("RANK", "0")) > 0  # under torchrun, rank 0 speaks for all
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs every CPU variant it tries
    try:
        args.func(args)
    except ReidlibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        again = " ".join(["python -m reidlib", *(argv if argv is not None else sys.argv[1:])])
        print(f"{stop}\nresume with the same command: {again}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
