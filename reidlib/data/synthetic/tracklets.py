"""Tracklets of the synthetic world in the DukeMTMC-VideoReID layout (``--preset tracklets``): the
plan (one person walking through one camera for a few frames), its counts, and the files
``SPLIT/PPPP/TTTT/PPPP_Cc_FFFF_XNNNNN.jpg``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from reidlib.data.synthetic.render import Camera, draw_walk, paint, walk_pose
from reidlib.data.synthetic.world import (
    TRACKLET_SPLITS,
    SynthConfig,
    cast,
    gallery_visits,
    random_identity,
    seeded_rng,
    test_cameras,
    train_cameras,
)


def tracklet_plan(cfg: SynthConfig, seed: int) -> list[tuple[str, int, int, dict, int, int]]:
    """Every tracklet to draw: (split, pid, camera, identity attributes, tracklet key, frames).

    The key tells apart the tracklets of one (pid, camera): training ones count from 0, a test
    identity's query is 0 and its gallery tracklets count from 1, a distractor's is its number.
    """
    train_pids, test_pids, people = cast(cfg, seed)
    lo, hi = cfg.frames_per_tracklet

    def frames(rng: np.random.Generator) -> int:
        return int(rng.integers(lo, hi + 1))

    plan = []
    for pid in train_pids:
        rng = seeded_rng(seed, 3, pid)
        for cam in sorted(train_cameras(cfg, rng)):
            for key in range(int(rng.integers(cfg.tracklets_per_camera[0], cfg.tracklets_per_camera[1] + 1))):
                plan.append(("train", pid, cam, people[pid], key, frames(rng)))
    for pid in test_pids:
        rng = seeded_rng(seed, 4, pid)
        for cam in test_cameras(cfg, rng):
            plan.append(("query", pid, cam, people[pid], 0, frames(rng)))
            for key in gallery_visits(cfg, rng):
                plan.append(("gallery", pid, cam, people[pid], key, frames(rng)))
    for n in range(cfg.num_distractors):
        rng = seeded_rng(seed, 5, n)
        cam = int(rng.integers(cfg.num_cameras))
        plan.append(("gallery", 0, cam, random_identity(rng, cfg), n, frames(rng)))
    return plan


def tracklet_counts(cfg: SynthConfig, plan: list) -> dict:
    counts = {}
    for split in TRACKLET_SPLITS:
        rows = [row for row in plan if row[0] == split]
        counts[f"{split}_ids"] = len({pid for _, pid, *_ in rows if pid != 0})
        counts[f"{split}_tracklets"] = len(rows)
        counts[f"{split}_frames"] = sum(row[5] for row in rows)
    counts["distractor_tracklets"] = cfg.num_distractors
    counts["cameras"] = cfg.num_cameras
    return counts


def write_tracklets(out: Path, cfg: SynthConfig, seed: int, plan: list, cameras: list[Camera], desc: str) -> None:
    """Each tracklet's frames as ``SPLIT/PPPP/TTTT/PPPP_Cc_FFFF_XNNNNN.jpg`` (see the module docstring).

    A tracklet's walk comes from a generator seeded by (seed, 8, pid, camera, key), each frame's
    jitter and noise from one seeded by (seed, 9, pid, camera, key, frame).
    """
    for split in TRACKLET_SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
    scale_jitter, offset_jitter = cfg.frame_jitter * cfg.scale_jitter, cfg.frame_jitter * cfg.offset_jitter
    within = Counter()  # tracklets so far in each (split, pid) folder
    with tqdm(total=sum(row[5] for row in plan), desc=desc, unit="img") as bar:
        for number, (split, pid, cam, person, key, frames) in enumerate(plan, start=1):
            within[split, pid] += 1
            folder = out / split / f"{pid:04d}" / f"{within[split, pid]:04d}"
            folder.mkdir(parents=True)
            walk = draw_walk(
                cameras[cam],
                seeded_rng(seed, 8, pid, cam, key),
                frames,
                walk=cfg.walk,
                light_drift=cfg.light_drift,
                scale_jitter=cfg.scale_jitter,
                offset_jitter=cfg.offset_jitter,
                occlusion_prob=cfg.occlusion_prob,
            )
            for frame in range(frames):
                rng = seeded_rng(seed, 9, pid, cam, key, frame)
                pose = walk_pose(walk, frame, rng, scale_jitter=scale_jitter, offset_jitter=offset_jitter)
                img = paint(person, cameras[cam], pose, rng)
                img.save(folder / f"{pid:04d}_C{cam + 1}_F{frame + 1:04d}_X{number:05d}.jpg", quality=cfg.jpeg_quality)
                bar.update()
