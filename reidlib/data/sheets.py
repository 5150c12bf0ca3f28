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

from reidlib.data.dataset import read_image
from reidlib.data.records import ImageRecord, evenly_spaced
from reidlib.errors import DataError

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
            sheet.paste(
                read_image(shot.path).resize((CELL_W, CELL_H), Image.BILINEAR), (x, HEADER_H + row * (CELL_H + GAP))
            )
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
            sheet.paste(
                read_image(r.frames[frame]).resize((CELL_W, CELL_H), Image.BILINEAR),
                (LABEL_W + GAP + col * (CELL_W + GAP), y),
            )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
