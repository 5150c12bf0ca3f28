"""The command line: ``python -m reidlib COMMAND ...``.

A thin layer: it parses arguments, calls the library, and turns a :class:`ReidlibError` into one
line on stderr and exit code 2. Library modules log; only this layer prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from reidlib.config import LAYOUTS
from reidlib.errors import DataError, ReidlibError, RunDirError
from reidlib.utils.interrupts import Interrupted


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


def _cmd_train(args: argparse.Namespace) -> None:
    from reidlib.config import load_config, parse_set
    from reidlib.engine.trainer import train
    from reidlib.evaluation.evaluator import format_metrics

    overrides = {"data_dir": args.data, **parse_set(args.set or [])}
    cfg = load_config(args.config, overrides)
    metrics = train(cfg, args.run_dir, eval_data=args.eval_data)
    if metrics is not None:  # None on the processes other than rank 0 under torchrun
        print(format_metrics(metrics, f"{args.run_dir}"))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from reidlib.evaluation.evaluator import evaluate_run, format_metrics

    metrics = evaluate_run(args.run_dir, data_dir=args.data, camera_aware=args.camera_aware, flip_test=args.flip_test)
    print(format_metrics(metrics, f"{args.run_dir}"))


def _cmd_compare(args: argparse.Namespace) -> None:
    from reidlib.evaluation.evaluator import is_evaluated
    from reidlib.utils.runs import read_metrics

    rows = [(run_dir, read_metrics(run_dir)) for run_dir in args.run_dirs]
    protocols = {m["protocol"] for _, m in rows if is_evaluated(m)}
    width = max(len(r) for r, _ in rows)
    lines = [
        f"protocol: {', '.join(sorted(protocols)) or 'none'} (combined global + part distance)",
        f"{'run':<{width}} {'epochs':>6} {'mAP':>6} {'R-1':>6} {'R-5':>6} {'R-10':>6}",
    ]
    for run_dir, m in rows:
        if is_evaluated(m):
            values = " ".join(f"{100 * m[k]:6.1f}" for k in ("mAP", "rank1", "rank5", "rank10"))
        else:
            values = f"not evaluated: {m['reason']}"
        lines.append(f"{run_dir:<{width}} {m['epochs']:>6} {values}")
    evaluated = all(is_evaluated(m) for _, m in rows)
    if len(rows) == 2 and evaluated and rows[0][1]["mAP"] > 0:
        lines.append(f"mAP ratio (last / first): {rows[1][1]['mAP'] / rows[0][1]['mAP']:.1f}x")
    print("\n".join(lines))


def _cmd_report(args: argparse.Namespace) -> None:
    from pathlib import Path

    from reidlib.evaluation.evaluator import is_evaluated
    from reidlib.reports.notebooks import report
    from reidlib.utils.runs import METRICS, read_metrics

    if (Path(args.run_dir) / METRICS).is_file() and not is_evaluated(metrics := read_metrics(args.run_dir)):
        raise RunDirError(
            f"{args.run_dir} was not evaluated ({metrics['reason']}); the report shows its test figures: "
            "train it with --eval-data DIR, a labelled set"
        )
    print(f"wrote {report(args.run_dir, args.out)}")


def _cmd_notebook(args: argparse.Namespace) -> None:
    import tempfile

    from reidlib.config import parse_set
    from reidlib.reports.notebooks import render

    params = parse_set(args.set or [])
    with tempfile.TemporaryDirectory() as tmp:
        out = render(args.name, params, args.out, out_notebook=f"{tmp}/executed.ipynb")
    print(f"wrote {out}")


def _cmd_embed(args: argparse.Namespace) -> None:
    from reidlib.retrieval.embedding import embed

    feats, run = embed(args.run_dir, args.images, args.out)
    known = set(feats["cameras"]) - {""}
    cameras = f"{len(known)} cameras" if known else "cameras unknown"
    print(
        f"wrote {args.out}: {len(feats['paths'])} images, global {feats['global'].shape[1]} + parts "
        f"{' x '.join(map(str, feats['parts'].shape[1:]))}, {cameras}; model of {args.run_dir} "
        f"(epoch {run.epoch}, sha256 {run.sha256[:12]})"
    )


def _cmd_query(args: argparse.Namespace) -> None:
    from reidlib.retrieval.ranking import query

    ranking = query(args.run_dir, args.gallery, args.query, args.out, top=args.top)
    num_q, k = ranking.order.shape
    print(
        f"wrote {args.out}/index.html and {args.out}/ranks.csv: top {k} of the gallery for {num_q} "
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

    p = sub.add_parser("baseline", help="evaluate untrained features (raw pixels, random CNN)")
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--layout", default="auto", choices=layouts)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_baseline)

    p = sub.add_parser("train", help="train SCL (resumes a run dir that holds a checkpoint)")
    p.add_argument(
        "--data",
        required=True,
        help="dataset root, or camera folders ROOT/<camera>/... (its train split; labels unused)",
    )
    p.add_argument(
        "--eval-data",
        metavar="DIR",
        help="a labelled set (known layout) whose query / gallery evaluate the run instead of --data's; "
        "camera folders have none, so without it such a run is not evaluated",
    )
    p.add_argument("--run-dir", required=True, help="where config, metrics and checkpoints go")
    p.add_argument("--config", help="a YAML config, e.g. configs/demo.yaml")
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
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("query", help="rank a gallery for query crops; write an HTML page of matches and ranks.csv")
    p.add_argument("--run-dir", required=True, help="a trained run dir (its newest checkpoint)")
    p.add_argument("--gallery", required=True, help="a features file of `embed` (.npz) or a folder of crops")
    p.add_argument("--query", required=True, help="one query image or a folder of them")
    p.add_argument("--top", type=int, default=10, help="matches per query (default 10)")
    p.add_argument("--out", required=True, help="folder for index.html and ranks.csv")
    p.set_defaults(func=_cmd_query)

    p = sub.add_parser("report", help="run the report notebooks on a run dir and export HTML to reports/")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", help="HTML file (default: reports/<run dir name>.html)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("notebook", help="run one notebook with papermill and export it as HTML")
    p.add_argument("name", help="a notebook of notebooks/, e.g. 00_walkthrough")
    p.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE", help="notebook parameters")
    p.add_argument("--out", required=True, help="HTML file to write, e.g. reports/walkthrough.html")
    p.set_defaults(func=_cmd_notebook)

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
