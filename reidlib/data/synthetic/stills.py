"""Still images of the synthetic world in the Market-1501 layout: the plan (who, which camera, how
many), its counts, and the files ``FOLDER/PPPP_cCs1_FFFFFF_01.jpg``.
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from reidlib.data.synthetic.render import Camera, render
from reidlib.data.synthetic.world import (
    SynthConfig,
    cast,
    gallery_visits,
    random_identity,
    seeded_rng,
    test_cameras,
    train_cameras,
)


def still_plan(cfg: SynthConfig, seed: int) -> list[tuple[str, int, int, dict, int]]:
    """Every still image to draw: (folder, pid, camera, identity attributes, image key)."""
    train_pids, test_pids, people = cast(cfg, seed)
    plan = []
    for pid in train_pids:
        rng = seeded_rng(seed, 3, pid)
        cams = train_cameras(cfg, rng)
        count = int(rng.integers(cfg.train_images_per_id[0], cfg.train_images_per_id[1] + 1))
        for n in range(count):
            cam = cams[n % len(cams)]
            plan.append(("bounding_box_train", pid, cam, people[pid], n))
    for pid in test_pids:
        rng = seeded_rng(seed, 4, pid)
        for cam in test_cameras(cfg, rng):
            plan.append(("query", pid, cam, people[pid], 0))
            for key in gallery_visits(cfg, rng):
                plan.append(("bounding_box_test", pid, cam, people[pid], key))
    for n in range(cfg.num_distractors):
        rng = seeded_rng(seed, 5, n)
        plan.append(("bounding_box_test", 0, int(rng.integers(cfg.num_cameras)), random_identity(rng, cfg), n))
    return plan


def still_counts(cfg: SynthConfig, plan: list) -> dict:
    def ids(folder: str) -> int:
        return len({pid for f, pid, *_ in plan if f == folder and pid != 0})

    def images(folder: str) -> int:
        return sum(f == folder for f, *_ in plan)

    return {
        "train_ids": ids("bounding_box_train"),
        "train_images": images("bounding_box_train"),
        "query_ids": ids("query"),
        "query_images": images("query"),
        "gallery_ids": ids("bounding_box_test"),
        "gallery_images": images("bounding_box_test"),
        "distractor_images": cfg.num_distractors,
        "cameras": cfg.num_cameras,
    }


def write_stills(out: Path, cfg: SynthConfig, seed: int, plan: list, cameras: list[Camera], desc: str) -> None:
    """Each image as ``FOLDER/PPPP_cCs1_FFFFFF_01.jpg`` (FFFFFF its place in the plan)."""
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for frame, (folder, pid, cam, person, key) in enumerate(tqdm(plan, desc=desc, unit="img")):
        rng = seeded_rng(seed, 6, pid, cam, key, frame if pid == 0 else 0)
        img = render(
            person,
            cameras[cam],
            rng,
            scale_jitter=cfg.scale_jitter,
            offset_jitter=cfg.offset_jitter,
            occlusion_prob=cfg.occlusion_prob,
        )
        name = f"{pid:04d}_c{cam + 1}s1_{frame:06d}_01.jpg"
        img.save(out / folder / name, quality=cfg.jpeg_quality)
