"""A procedural multi-camera pedestrian benchmark: the project's embedded default dataset.

Public re-ID datasets cannot be downloaded everywhere, and students need one whose difficulty they
can turn. ``python -m reidlib synth OUT_DIR --preset demo`` writes a Market-1501-layout dataset
(JPEG, ``PPPP_cCs1_FFFFFF_01.jpg``) and a ``manifest.json`` with the generator version, seed,
every parameter and the counts.

``--preset tracklets`` writes a small *video* dataset instead, in the DukeMTMC-VideoReID layout
(:func:`reidlib.data.video.read_duke_video`): ``train/``, ``query/`` and ``gallery/``, each
``PPPP/TTTT/PPPP_Cc_FFFF_XNNNNN.jpg`` with one TTTT folder per tracklet (counted from 1 within its
person's folder), camera c from 1, frame FFFF from 1 within the tracklet and NNNNN the tracklet's
number in the whole dataset, from 1. A tracklet is one person walking through one camera for a few
frames: the view and the scene stay, the person moves steadily across the crop, the legs swing,
scale, offset and light change a little, a passer-by may hide part of some frames
(:class:`reidlib.data.render.Walk`). Its frames are far more alike than two tracklets of the person
in two cameras. Training identities get one or more tracklets in each of their cameras; the query
holds one tracklet per test identity per camera, the gallery the rest plus distractor tracklets
(pid 0, in ``gallery/0000/``). The tracklet knobs (``frames_per_tracklet`` and those after it in
:class:`SynthConfig`) act on tracklets only and appear in a manifest only then; still-image
datasets are the same, file for file, as before they existed.

Identity lives in body parts: hair or hat, upper garment (colour, pattern, a logo seen only from
the front), lower garment (colour; trousers, shorts or skirt), shoes, a backpack or shoulder bag
seen from some viewpoints only, height and build. A share of *look-alike* identities copies another
identity and changes one garment only, so that part features matter. Each camera has its own scene
(background), colour cast, gamma, brightness, blur, resolution, noise and distance; each image
jitters crop, scale, pose, viewpoint and may be partly occluded. Same-camera images of different
people therefore look alike, and cross-camera images of one person less so: the confusions SCL's
cross-camera encouragement targets.

Guarantees: train and test identities are disjoint; every test identity is seen by at least two
cameras; the query holds one image (or tracklet) per identity per camera, the gallery the rest
plus distractors (pid 0); the same seed and parameters give byte-identical files (every random draw
comes from a generator seeded by (seed, what, identity, camera, image or tracklet and frame),
independent of order).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from reidlib.data.render import HEIGHT, SS, WIDTH, Camera, draw_walk, paint, render, walk_pose
from reidlib.errors import DataError

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1.1"

# Garment colours (RGB): distinct hues and greys, jittered per identity.
PALETTE = np.array(
    [
        (200, 30, 30), (230, 120, 20), (230, 200, 40), (40, 150, 50), (30, 90, 200),
        (120, 50, 170), (230, 110, 170), (120, 70, 30), (20, 20, 25), (235, 235, 235),
        (120, 120, 125), (30, 40, 90), (20, 150, 150), (160, 180, 60), (180, 150, 110),
    ],
    dtype=np.float64,
)
SKIN = np.array([(245, 205, 170), (225, 175, 135), (190, 135, 95), (140, 95, 60), (95, 65, 45)], dtype=np.float64)
HAIR = np.array([(25, 20, 15), (70, 45, 25), (140, 100, 50), (200, 170, 100), (150, 150, 150)], dtype=np.float64)


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the generator (saved in the manifest)."""

    num_train_ids: int = 200
    num_test_ids: int = 100
    num_distractors: int = 150  # gallery images of one-off people (pid 0)
    num_cameras: int = 5
    train_images_per_id: tuple[int, int] = (8, 12)  # drawn per identity, inclusive
    cameras_per_id: tuple[int, int] = (2, 4)
    gallery_per_camera: tuple[int, int] = (1, 2)  # test: gallery images per (identity, camera)
    lookalike_share: float = 0.3  # identities that copy another and change one garment
    colour_jitter: float = 18.0  # per-identity garment colour jitter (RGB units)
    cast_strength: float = 0.12  # camera colour gains drawn in 1 +- this
    gamma_range: tuple[float, float] = (0.85, 1.2)
    brightness_range: tuple[float, float] = (0.8, 1.15)
    blur_range: tuple[float, float] = (0.0, 1.2)  # Gaussian radius at output size
    lowres_share: float = 0.4  # cameras that record at reduced resolution
    noise_range: tuple[float, float] = (2.0, 10.0)
    distance_range: tuple[float, float] = (0.8, 0.96)  # person height / frame height per camera
    scale_jitter: float = 0.06
    offset_jitter: float = 0.07  # share of the frame width / height
    occlusion_prob: float = 0.2
    clutter: int = 14  # scene objects per camera background
    scene_colour: float = 18.0  # how far a camera's scene tint strays from grey (RGB units)
    clutter_contrast: float = 30.0  # brightness spread of scene objects around the scene's tone
    jpeg_quality: int = 90
    # tracklets (video re-ID); these defaults give still images, and the other knobs stay as they are
    frames_per_tracklet: tuple[int, int] = (0, 0)  # drawn per tracklet, inclusive; (0, 0): still images
    tracklets_per_camera: tuple[int, int] = (1, 1)  # training tracklets per (identity, camera)
    walk: float = 0.0  # how far a person moves across the crop during a tracklet (share of its width)
    light_drift: float = 0.0  # brightness change from a tracklet's first frame to its last (share)
    frame_jitter: float = 0.0  # share of scale_jitter and offset_jitter drawn again on every frame

    @property
    def tracklets(self) -> bool:
        """Whether this config draws tracklets (DukeMTMC-VideoReID layout) rather than still images."""
        return self.frames_per_tracklet[1] > 0


TRACKLET_FIELDS = ("frames_per_tracklet", "tracklets_per_camera", "walk", "light_drift", "frame_jitter")
STILL_FIELDS = ("train_images_per_id",)  # tracklets count per camera instead
TRACKLET_SPLITS = ("train", "query", "gallery")

PRESETS: dict[str, SynthConfig] = {
    "tiny": SynthConfig(
        num_train_ids=12, num_test_ids=8, num_distractors=6, num_cameras=3,
        train_images_per_id=(4, 6), cameras_per_id=(2, 3), gallery_per_camera=(1, 1),
    ),
    "demo": SynthConfig(),
    "hard": SynthConfig(
        num_train_ids=400, num_test_ids=200, num_distractors=400, num_cameras=6,
        lookalike_share=0.5, colour_jitter=12.0, cast_strength=0.35, gamma_range=(0.6, 1.6),
        brightness_range=(0.5, 1.35), blur_range=(0.3, 1.6), lowres_share=0.5, scene_colour=60.0,
        clutter_contrast=80.0,
        noise_range=(4.0, 14.0), occlusion_prob=0.35, scale_jitter=0.1, offset_jitter=0.1,
    ),
    # ~7,500 frames: generated in well under a minute, trained on the CPU in minutes
    "tracklets": SynthConfig(
        num_train_ids=150, num_test_ids=60, num_distractors=40, num_cameras=5, gallery_per_camera=(1, 1),
        frames_per_tracklet=(6, 8), tracklets_per_camera=(1, 2), walk=0.2, light_drift=0.08, frame_jitter=0.25,
    ),
}


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


# ---------------------------------------------------------------------------------------------
# Identities


def _colour(rng: np.random.Generator, jitter: float) -> tuple[int, int, int]:
    base = PALETTE[rng.integers(len(PALETTE))]
    return tuple(int(v) for v in np.clip(base + rng.normal(0, jitter, 3), 0, 255))


def _identity(rng: np.random.Generator, cfg: SynthConfig) -> dict:
    c = lambda: _colour(rng, cfg.colour_jitter)  # noqa: E731
    return {
        "skin": tuple(int(v) for v in SKIN[rng.integers(len(SKIN))]),
        "hair": tuple(int(v) for v in HAIR[rng.integers(len(HAIR))]),
        "hair_style": str(rng.choice(["short", "long", "hat"], p=[0.5, 0.3, 0.2])),
        "hat": c(),
        "upper": c(),
        "upper2": c(),  # pattern / sleeve colour
        "pattern": str(rng.choice(["plain", "hstripes", "vstripes", "sleeves"], p=[0.4, 0.25, 0.15, 0.2])),
        "logo": str(rng.choice(["none", "circle", "square", "triangle"], p=[0.5, 0.2, 0.15, 0.15])),
        "logo_colour": c(),
        "lower": c(),
        "lower_type": str(rng.choice(["trousers", "shorts", "skirt"], p=[0.6, 0.2, 0.2])),
        "shoes": c(),
        "bag": str(rng.choice(["none", "backpack", "shoulder"], p=[0.45, 0.35, 0.2])),
        "bag_colour": c(),
        "height": float(rng.uniform(0.88, 1.0)),
        "build": float(rng.uniform(0.82, 1.18)),
    }


LOOKALIKE_CHANGES = (
    ("upper",), ("lower", "lower_type"), ("hair_style", "hat", "hair"), ("bag", "bag_colour"),
    ("pattern", "upper2"), ("logo", "logo_colour"), ("shoes",),
)


def _identities(cfg: SynthConfig, seed: int, pids: list[int], tag: int) -> dict[int, dict]:
    """Attributes of ``pids``; a share are look-alikes of an earlier pid differing in one part."""
    people: dict[int, dict] = {}
    for n, pid in enumerate(pids):
        rng = _rng(seed, tag, pid)
        person = _identity(rng, cfg)
        if n and rng.random() < cfg.lookalike_share:
            twin = dict(people[pids[int(rng.integers(n))]])
            fresh = _identity(rng, cfg)
            for key in LOOKALIKE_CHANGES[int(rng.integers(len(LOOKALIKE_CHANGES)))]:
                twin[key] = fresh[key]
            person = twin
        people[pid] = person
    return people


# ---------------------------------------------------------------------------------------------
# Cameras


def _camera(cfg: SynthConfig, seed: int, cam: int) -> Camera:
    rng = _rng(seed, 7, cam)
    h, w = HEIGHT * SS, 3 * WIDTH * SS
    grey = rng.uniform(70, 190)
    base = grey + rng.uniform(-cfg.scene_colour, cfg.scene_colour, 3)  # a muted, tinted scene
    yy = np.linspace(0, 1, h)[:, None, None]
    scene = base * (0.85 + 0.3 * yy) + rng.normal(0, 5, (h, w, 3))  # vertical gradient + grain
    img = Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)

    def shade() -> tuple[int, ...]:
        tone = base + rng.uniform(-cfg.clutter_contrast, cfg.clutter_contrast) + rng.normal(0, 8, 3)
        return tuple(int(v) for v in np.clip(tone, 0, 255))

    horizon = int(h * rng.uniform(0.6, 0.8))
    draw.rectangle([0, horizon, w, h], fill=shade())  # ground
    for _ in range(cfg.clutter):  # walls, windows, poles, signs
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, horizon))
        x1, y1 = x0 + int(rng.integers(6, 60)), y0 + int(rng.integers(10, 120))
        draw.rectangle([x0, y0, x1, y1], fill=shade())
    lo, hi = cfg.gamma_range
    return Camera(
        scene=np.asarray(img),
        gains=tuple(float(g) for g in rng.uniform(1 - cfg.cast_strength, 1 + cfg.cast_strength, 3)),
        gamma=float(rng.uniform(lo, hi)),
        brightness=float(rng.uniform(*cfg.brightness_range)),
        blur=float(rng.uniform(*cfg.blur_range)),
        lowres=float(rng.uniform(0.45, 0.7)) if rng.random() < cfg.lowres_share else 1.0,
        noise=float(rng.uniform(*cfg.noise_range)),
        distance=float(rng.uniform(*cfg.distance_range)),
    )


# ---------------------------------------------------------------------------------------------
# The dataset


def _people(cfg: SynthConfig, seed: int) -> tuple[list[int], list[int], dict[int, dict]]:
    """The training pids, the test pids (after them) and every one's attributes."""
    train_pids = list(range(1, cfg.num_train_ids + 1))
    test_pids = list(range(cfg.num_train_ids + 1, cfg.num_train_ids + cfg.num_test_ids + 1))
    return train_pids, test_pids, {**_identities(cfg, seed, train_pids, 1), **_identities(cfg, seed, test_pids, 2)}


def _train_cameras(cfg: SynthConfig, rng: np.random.Generator) -> list[int]:
    """The cameras that see one training identity, in the order drawn."""
    size = min(int(rng.integers(cfg.cameras_per_id[0], cfg.cameras_per_id[1] + 1)), cfg.num_cameras)
    return [int(c) for c in rng.choice(cfg.num_cameras, size=size, replace=False)]


def _test_cameras(cfg: SynthConfig, rng: np.random.Generator) -> list[int]:
    """The cameras that see one test identity, at least two, sorted."""
    size = max(2, min(int(rng.integers(cfg.cameras_per_id[0], cfg.cameras_per_id[1] + 1)), cfg.num_cameras))
    return sorted(int(c) for c in rng.choice(cfg.num_cameras, size=size, replace=False))


def _gallery_visits(cfg: SynthConfig, rng: np.random.Generator) -> range:
    """Keys of a test identity's gallery images (or tracklets) in one camera; the query's is 0."""
    return range(1, int(rng.integers(cfg.gallery_per_camera[0], cfg.gallery_per_camera[1] + 1)) + 1)


def _plan(cfg: SynthConfig, seed: int) -> list[tuple[str, int, int, dict, int]]:
    """Every still image to draw: (folder, pid, camera, identity attributes, image key)."""
    train_pids, test_pids, people = _people(cfg, seed)
    plan = []
    for pid in train_pids:
        rng = _rng(seed, 3, pid)
        cams = _train_cameras(cfg, rng)
        count = int(rng.integers(cfg.train_images_per_id[0], cfg.train_images_per_id[1] + 1))
        for n in range(count):
            cam = cams[n % len(cams)]
            plan.append(("bounding_box_train", pid, cam, people[pid], n))
    for pid in test_pids:
        rng = _rng(seed, 4, pid)
        for cam in _test_cameras(cfg, rng):
            plan.append(("query", pid, cam, people[pid], 0))
            for key in _gallery_visits(cfg, rng):
                plan.append(("bounding_box_test", pid, cam, people[pid], key))
    for n in range(cfg.num_distractors):
        rng = _rng(seed, 5, n)
        plan.append(("bounding_box_test", 0, int(rng.integers(cfg.num_cameras)), _identity(rng, cfg), n))
    return plan


def _tracklet_plan(cfg: SynthConfig, seed: int) -> list[tuple[str, int, int, dict, int, int]]:
    """Every tracklet to draw: (split, pid, camera, identity attributes, tracklet key, frames).

    The key tells apart the tracklets of one (pid, camera): training ones count from 0, a test
    identity's query is 0 and its gallery tracklets count from 1, a distractor's is its number.
    """
    train_pids, test_pids, people = _people(cfg, seed)
    lo, hi = cfg.frames_per_tracklet

    def frames(rng: np.random.Generator) -> int:
        return int(rng.integers(lo, hi + 1))

    plan = []
    for pid in train_pids:
        rng = _rng(seed, 3, pid)
        for cam in sorted(_train_cameras(cfg, rng)):
            for key in range(int(rng.integers(cfg.tracklets_per_camera[0], cfg.tracklets_per_camera[1] + 1))):
                plan.append(("train", pid, cam, people[pid], key, frames(rng)))
    for pid in test_pids:
        rng = _rng(seed, 4, pid)
        for cam in _test_cameras(cfg, rng):
            plan.append(("query", pid, cam, people[pid], 0, frames(rng)))
            for key in _gallery_visits(cfg, rng):
                plan.append(("gallery", pid, cam, people[pid], key, frames(rng)))
    for n in range(cfg.num_distractors):
        rng = _rng(seed, 5, n)
        cam = int(rng.integers(cfg.num_cameras))
        plan.append(("gallery", 0, cam, _identity(rng, cfg), n, frames(rng)))
    return plan


def _check(cfg: SynthConfig) -> None:
    """A tracklet knob set for still images, or tracklets without frames, is an error."""
    if cfg.tracklets:
        if cfg.frames_per_tracklet[0] < 1:
            raise DataError(f"frames_per_tracklet {cfg.frames_per_tracklet}: a tracklet has at least one frame")
        return
    default = SynthConfig()
    for name in TRACKLET_FIELDS:
        if getattr(cfg, name) != getattr(default, name):
            raise DataError(f"{name} acts on tracklets only; set frames_per_tracklet too (or use preset tracklets)")


def _params(cfg: SynthConfig) -> dict:
    """The manifest's parameters: those that act, so a still-image manifest lists no tracklet knob."""
    unused = STILL_FIELDS if cfg.tracklets else TRACKLET_FIELDS
    return {name: value for name, value in asdict(cfg).items() if name not in unused}


def _still_counts(cfg: SynthConfig, plan: list) -> dict:
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


def _tracklet_counts(cfg: SynthConfig, plan: list) -> dict:
    counts = {}
    for split in TRACKLET_SPLITS:
        rows = [row for row in plan if row[0] == split]
        counts[f"{split}_ids"] = len({pid for _, pid, *_ in rows if pid != 0})
        counts[f"{split}_tracklets"] = len(rows)
        counts[f"{split}_frames"] = sum(row[5] for row in rows)
    counts["distractor_tracklets"] = cfg.num_distractors
    counts["cameras"] = cfg.num_cameras
    return counts


def _manifest(cfg: SynthConfig, preset: str, seed: int, counts: dict) -> dict:
    return {
        "generator": "reidlib.data.synthetic",
        "version": GENERATOR_VERSION,
        "preset": preset,
        "seed": seed,
        "image_size": [HEIGHT, WIDTH],
        "params": _params(cfg),
        "counts": counts,
    }


def _write_stills(out: Path, cfg: SynthConfig, seed: int, plan: list, cameras: list[Camera], desc: str) -> None:
    """Each image as ``FOLDER/PPPP_cCs1_FFFFFF_01.jpg`` (FFFFFF its place in the plan)."""
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for frame, (folder, pid, cam, person, key) in enumerate(tqdm(plan, desc=desc, unit="img")):
        rng = _rng(seed, 6, pid, cam, key, frame if pid == 0 else 0)
        img = render(person, cameras[cam], rng, scale_jitter=cfg.scale_jitter, offset_jitter=cfg.offset_jitter,
                     occlusion_prob=cfg.occlusion_prob)
        name = f"{pid:04d}_c{cam + 1}s1_{frame:06d}_01.jpg"
        img.save(out / folder / name, quality=cfg.jpeg_quality)


def _write_tracklets(out: Path, cfg: SynthConfig, seed: int, plan: list, cameras: list[Camera], desc: str) -> None:
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
            walk = draw_walk(cameras[cam], _rng(seed, 8, pid, cam, key), frames, walk=cfg.walk,
                             light_drift=cfg.light_drift, scale_jitter=cfg.scale_jitter,
                             offset_jitter=cfg.offset_jitter, occlusion_prob=cfg.occlusion_prob)
            for frame in range(frames):
                rng = _rng(seed, 9, pid, cam, key, frame)
                pose = walk_pose(walk, frame, rng, scale_jitter=scale_jitter, offset_jitter=offset_jitter)
                img = paint(person, cameras[cam], pose, rng)
                img.save(folder / f"{pid:04d}_C{cam + 1}_F{frame + 1:04d}_X{number:05d}.jpg", quality=cfg.jpeg_quality)
                bar.update()


def generate(out_dir: str | Path, preset: str = "demo", seed: int = 0, **overrides) -> dict:
    """Write the synthetic dataset into ``out_dir`` (Market-1501 layout; tracklets:
    DukeMTMC-VideoReID layout) and return its manifest.

    Args:
        out_dir: a new or empty folder; one that already holds the identical dataset is left as
            it is (so ``make demo`` can run again); any other content is an error.
        preset: tiny (tests), demo (the CPU demo), hard, or tracklets (a small video dataset).
        seed: the random seed; the same seed and parameters give byte-identical files.
        **overrides: SynthConfig fields that replace the preset's.

    Returns:
        The manifest (also written to ``out_dir/manifest.json``), with ``counts``.
    """
    if preset not in PRESETS:
        raise DataError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    try:
        cfg = replace(PRESETS[preset], **overrides)
    except TypeError as err:
        raise DataError(f"unknown synthetic parameter: {err}") from err
    _check(cfg)
    if cfg.tracklets:
        plan, write = _tracklet_plan(cfg, seed), _write_tracklets
        counts = _tracklet_counts(cfg, plan)
    else:
        plan, write = _plan(cfg, seed), _write_stills
        counts = _still_counts(cfg, plan)
    manifest = _manifest(cfg, preset, seed, counts)
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    out = Path(out_dir)
    manifest_path = out / "manifest.json"
    if out.exists() and any(out.iterdir()):
        if manifest_path.is_file() and manifest_path.read_text() == text:
            log.info("%s already holds this dataset (preset %s, seed %d)", out, preset, seed)
            return manifest
        raise DataError(
            f"{out} is not empty and does not hold this dataset (preset {preset}, seed {seed}); "
            "choose a new folder or delete it"
        )
    cameras = [_camera(cfg, seed, c) for c in range(cfg.num_cameras)]
    write(out, cfg, seed, plan, cameras, f"synth {preset}")
    manifest_path.write_text(text)  # last: a folder without it is an interrupted run
    return manifest
