"""Pictures of a dataset, for the README, the reports and a first look at new data.

:func:`identity_sheet` draws one row per identity and one column per camera, so the same person
seen by every camera sits side by side: the camera nuisances (colour cast, light, blur, distance)
and the per-image jitter are visible at a glance. ``python -m reidlib sheet DATA_DIR OUT.png``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageDraw

from reidlib.data import ImageRecord, read_image
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
