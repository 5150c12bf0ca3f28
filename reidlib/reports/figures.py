"""Pictures of a dataset, for the README, the reports and a first look at new data.

:func:`identity_sheet` draws one row per identity and one column per camera, so the same person
seen by every camera sits side by side: the camera nuisances (colour cast, light, blur, distance)
and the per-image jitter are visible at a glance. ``python -m reidlib sheet DATA_DIR OUT.png``.
Camera folders have no identities to make rows of: :func:`camera_sheet` draws a column of crops
per camera instead. A video set's identity sheet shows each tracklet's middle frame;
:func:`tracklet_sheet` draws tracklets frame by frame.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageDraw

from reidlib.data import ImageRecord, read_image
from reidlib.data.records import evenly_spaced
from reidlib.errors import DataError
from reidlib.evaluation.rank import protocol_ranking

CELL_W, CELL_H = 64, 128
LABEL_W, HEADER_H, GAP = 56, 18, 4


def identity_sheet(
    records: list[ImageRecord],
    out_path: str | Path,
    num_ids: int = 8,
    seed: int = 0,
) -> Path:
    """Write a PNG grid: ``num_ids`` identities (rows) x cameras (columns), one image per cell.

    Identities seen by the most cameras come first (ties broken by a seeded shuffle); an empty
    cell means that camera never saw the identity. pid 0 (distractors) is left out.

    Returns:
        the path written.
    """
    by_id: dict[int, dict[int, list[ImageRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.pid > 0:
            by_id[r.pid][r.camid].append(r)
    if not by_id:
        raise DataError("identity_sheet: no identities to draw (empty split, or distractors only)")
    cams = sorted({r.camid for r in records})
    rng = random.Random(seed)
    pids = sorted(by_id)
    rng.shuffle(pids)
    pids = sorted(pids, key=lambda p: -len(by_id[p]))[:num_ids]

    width = LABEL_W + len(cams) * (CELL_W + GAP)
    height = HEADER_H + len(pids) * (CELL_H + GAP)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for col, cam in enumerate(cams):
        draw.text((LABEL_W + col * (CELL_W + GAP) + 14, 3), f"cam {cam + 1}", fill="black")
    for row, pid in enumerate(pids):
        y = HEADER_H + row * (CELL_H + GAP)
        draw.text((4, y + CELL_H // 2 - 6), f"id {pid}", fill="black")
        for col, cam in enumerate(cams):
            shots = by_id[pid].get(cam)
            if shots:
                img = read_image(rng.choice(shots).path).resize((CELL_W, CELL_H), Image.BILINEAR)
                sheet.paste(img, (LABEL_W + col * (CELL_W + GAP), y))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def camera_sheet(
    records: list[ImageRecord],
    out_path: str | Path,
    names: dict[int, str],
    per_camera: int = 8,
    seed: int = 0,
) -> Path:
    """Write a PNG grid for images without identities (camera folders): one column per camera,
    headed by its name (cut to 10 characters), of up to ``per_camera`` of its crops drawn at random
    (seeded), one per row; the rows are not people.

    Args:
        records: the crops; names: ``{camid: name}`` (:func:`reidlib.data.camera_names`).

    Returns:
        the path written.
    """
    by_cam: dict[int, list[ImageRecord]] = defaultdict(list)
    for r in records:
        by_cam[r.camid].append(r)
    if not by_cam:
        raise DataError("camera_sheet: no images to draw (empty split)")
    cams = sorted(by_cam)
    rng = random.Random(seed)
    columns = [rng.sample(by_cam[cam], min(per_camera, len(by_cam[cam]))) for cam in cams]
    rows = max(len(column) for column in columns)
    sheet = Image.new("RGB", (GAP + len(cams) * (CELL_W + GAP), HEADER_H + rows * (CELL_H + GAP)), "white")
    draw = ImageDraw.Draw(sheet)
    for col, (cam, shots) in enumerate(zip(cams, columns)):
        x = GAP + col * (CELL_W + GAP)
        draw.text((x + 2, 3), names[cam][:10], fill="black")
        for row, shot in enumerate(shots):
            sheet.paste(read_image(shot.path).resize((CELL_W, CELL_H), Image.BILINEAR), (x, HEADER_H + row * (CELL_H + GAP)))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def tracklet_sheet(
    records: list[ImageRecord], out_path: str | Path, num_ids: int = 4, frames: int = 8, seed: int = 0
) -> Path:
    """Write a PNG of tracklets frame by frame: for ``num_ids`` identities drawn at random (seeded),
    one row per tracklet (labelled with its identity and camera, the identity's rows together),
    up to ``frames`` of its frames evenly spaced, in time order.

    Args:
        records: tracklets (:func:`reidlib.data.tracklet`), e.g. a video set's training split.

    Returns:
        the path written.
    """
    tracklets = [r for r in records if r.frames]
    if not tracklets:
        raise DataError("tracklet_sheet: no tracklets to draw (records without frames)")
    by_pid: dict[int, list[ImageRecord]] = defaultdict(list)
    for r in tracklets:
        by_pid[r.pid].append(r)
    pids = random.Random(seed).sample(sorted(by_pid), min(num_ids, len(by_pid)))
    rows = [r for pid in pids for r in sorted(by_pid[pid], key=lambda r: r.camid)]
    width = LABEL_W + GAP + frames * (CELL_W + GAP)
    sheet = Image.new("RGB", (width, GAP + len(rows) * (CELL_H + GAP)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, r in enumerate(rows):
        y = GAP + row * (CELL_H + GAP)
        draw.text((4, y + CELL_H // 2 - 12), f"id {r.pid}", fill="black")
        draw.text((4, y + CELL_H // 2 + 2), f"cam {r.camid + 1}", fill="black")
        for col, frame in enumerate(evenly_spaced(len(r.frames), frames)):
            sheet.paste(read_image(r.frames[frame]).resize((CELL_W, CELL_H), Image.BILINEAR), (LABEL_W + GAP + col * (CELL_W + GAP), y))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def _framed(ax, path: str, title: str, colour: str) -> None:
    """Draw one image in ``ax``, titled and framed: black (the anchor / query) thin, others thick."""
    ax.imshow(read_image(path))
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(1 if colour == "black" else 4)


def retrieval_grid(
    query: dict, gallery: dict, distmat, query_rows: list[int], top: int = 10
):
    """A matplotlib figure: each chosen query, then its ``top`` nearest gallery images under the
    standard protocol (same identity and camera removed), true matches framed green, false red.

    Args:
        query, gallery: dicts with ``paths``, ``pids`` and ``camids`` (as in ``features.npz``).
        distmat: (num_query, num_gallery) distances.
        query_rows: which queries to show.

    Returns:
        the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(query_rows), top + 1, figsize=(1.1 * (top + 1), 2.3 * len(query_rows)))
    axes = np.atleast_2d(axes)
    for row, q in enumerate(query_rows):
        (order,), _ = protocol_ranking(
            distmat[q : q + 1], query["pids"][q : q + 1], query["camids"][q : q + 1], gallery["pids"], gallery["camids"], top
        )
        cells = [(query["paths"][q], None, f"query\nid {query['pids'][q]} c{query['camids'][q] + 1}")]
        cells += [
            (gallery["paths"][g], gallery["pids"][g] == query["pids"][q], f"{rank + 1}\nc{gallery['camids'][g] + 1}")
            for rank, g in enumerate(order)
        ]
        for ax, (path, correct, label) in zip(axes[row], cells):
            _framed(ax, str(path), label, "black" if correct is None else ("limegreen" if correct else "red"))
        for ax in axes[row][len(cells):]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def selection_figure(records: list[ImageRecord], anchor: int, picks: dict[str, tuple], num_neg: int = 6):
    """One row per setting: the anchor, its selected positives, then its first hard negatives.

    Positives of the anchor's true identity are framed green, others red; negatives of the
    anchor's identity (false negatives) are framed red, true negatives grey. Labels are read only
    to draw the frames.

    Args:
        records: the training records, indexed like the memory slots.
        anchor: the anchor's slot.
        picks: ``{row title: (pos_idx (1+K,), neg_idx (M,))}`` with ``pos_idx[0] == anchor``.
        num_neg: negatives to show per row.

    Returns:
        the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    width = max(len(p) + min(num_neg, len(n)) for p, n in picks.values())
    fig, axes = plt.subplots(len(picks), width, figsize=(1.05 * width, 2.4 * len(picks)))
    axes = np.atleast_2d(axes)
    me = records[anchor]
    for row, (title, (pos, neg)) in enumerate(picks.items()):
        cells = [(int(pos[0]), "anchor", "black")]
        cells += [(int(j), f"pos {i + 1}", "limegreen" if records[j].pid == me.pid else "red") for i, j in enumerate(pos[1:])]
        cells += [(int(j), f"neg {i + 1}", "red" if records[j].pid == me.pid else "0.6") for i, j in enumerate(neg[:num_neg])]
        for ax, (slot, label, colour) in zip(axes[row], cells):
            _framed(ax, records[slot].path, f"{label}\nc{records[slot].camid + 1}", colour)
        for ax in axes[row][len(cells):]:
            ax.axis("off")
        axes[row][0].set_ylabel(title, fontsize=9)
    fig.tight_layout()
    return fig


def methods_retrieval_grid(query: dict, gallery: dict, ranked: dict, first_match: dict | None = None):
    """The same queries under several methods: per query, one row per method (the query, then its
    ranked gallery images), true matches framed green, false red.

    Args:
        query, gallery: dicts with ``paths``, ``pids`` and ``camids`` (Q and G long).
        ranked: ``{method: (Q, T) gallery indices, nearest first}``, the protocol's junk removed
            (:func:`reidlib.evaluation.rank.protocol_ranking`).
        first_match: ``{method: (Q,) rank of the first true match}`` (0: none), shown under its name.

    Returns:
        the matplotlib figure.
    """
    import textwrap

    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(ranked)
    top = max(r.shape[1] for r in ranked.values())
    num_q = len(query["pids"])
    fig, axes = plt.subplots(num_q * len(methods), top + 1, figsize=(1.1 * (top + 1), 2.2 * num_q * len(methods)))
    axes = np.atleast_2d(axes)
    for q in range(num_q):
        for m, method in enumerate(methods):
            row = axes[q * len(methods) + m]
            title = f"query {q + 1}: id {query['pids'][q]} c{query['camids'][q] + 1}"
            _framed(row[0], str(query["paths"][q]), title, "black")
            label = textwrap.fill(method, 18)
            if first_match is not None:
                rank = int(first_match[method][q])
                label += f"\n1st match: {rank if rank else 'none'}"
            row[0].set_ylabel(label, fontsize=8)
            for col, g in enumerate(ranked[method][q], start=1):
                colour = "limegreen" if gallery["pids"][g] == query["pids"][q] else "red"
                _framed(row[col], str(gallery["paths"][g]), f"{col}\nc{gallery['camids'][g] + 1}", colour)
            for ax in row[len(ranked[method][q]) + 1:]:
                ax.axis("off")
    fig.tight_layout()
    return fig
