"""The synthetic world: its settings and presets, its people (identity lives in body parts, with
look-alikes) and its cameras (each with its own scene, colour cast, light, blur and distance), and
who is seen by which camera. Every random draw comes from :func:`seeded_rng`, a generator seeded by the
keys of what it draws, independent of order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from reidlib.data.synthetic.render import HEIGHT, SS, WIDTH, Camera

GENERATOR_VERSION = "1.1"

# Garment colours (RGB): distinct hues and greys, jittered per identity.
PALETTE = np.array(
    [
        (200, 30, 30),
        (230, 120, 20),
        (230, 200, 40),
        (40, 150, 50),
        (30, 90, 200),
        (120, 50, 170),
        (230, 110, 170),
        (120, 70, 30),
        (20, 20, 25),
        (235, 235, 235),
        (120, 120, 125),
        (30, 40, 90),
        (20, 150, 150),
        (160, 180, 60),
        (180, 150, 110),
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
        num_train_ids=12,
        num_test_ids=8,
        num_distractors=6,
        num_cameras=3,
        train_images_per_id=(4, 6),
        cameras_per_id=(2, 3),
        gallery_per_camera=(1, 1),
    ),
    "demo": SynthConfig(),
    "hard": SynthConfig(
        num_train_ids=400,
        num_test_ids=200,
        num_distractors=400,
        num_cameras=6,
        lookalike_share=0.5,
        colour_jitter=12.0,
        cast_strength=0.35,
        gamma_range=(0.6, 1.6),
        brightness_range=(0.5, 1.35),
        blur_range=(0.3, 1.6),
        lowres_share=0.5,
        scene_colour=60.0,
        clutter_contrast=80.0,
        noise_range=(4.0, 14.0),
        occlusion_prob=0.35,
        scale_jitter=0.1,
        offset_jitter=0.1,
    ),
    # ~7,500 frames: generated in well under a minute, trained on the CPU in minutes
    "tracklets": SynthConfig(
        num_train_ids=150,
        num_test_ids=60,
        num_distractors=40,
        num_cameras=5,
        gallery_per_camera=(1, 1),
        frames_per_tracklet=(6, 8),
        tracklets_per_camera=(1, 2),
        walk=0.2,
        light_drift=0.08,
        frame_jitter=0.25,
    ),
}


def seeded_rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


# ---------------------------------------------------------------------------------------------
# Identities


def random_colour(rng: np.random.Generator, jitter: float) -> tuple[int, int, int]:
    base = PALETTE[rng.integers(len(PALETTE))]
    return tuple(int(v) for v in np.clip(base + rng.normal(0, jitter, 3), 0, 255))


def random_identity(rng: np.random.Generator, cfg: SynthConfig) -> dict:
    c = lambda: random_colour(rng, cfg.colour_jitter)  # noqa: E731
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
    ("upper",),
    ("lower", "lower_type"),
    ("hair_style", "hat", "hair"),
    ("bag", "bag_colour"),
    ("pattern", "upper2"),
    ("logo", "logo_colour"),
    ("shoes",),
)


def identities(cfg: SynthConfig, seed: int, pids: list[int], tag: int) -> dict[int, dict]:
    """Attributes of ``pids``; a share are look-alikes of an earlier pid differing in one part."""
    people: dict[int, dict] = {}
    for n, pid in enumerate(pids):
        rng = seeded_rng(seed, tag, pid)
        person = random_identity(rng, cfg)
        if n and rng.random() < cfg.lookalike_share:
            twin = dict(people[pids[int(rng.integers(n))]])
            fresh = random_identity(rng, cfg)
            for key in LOOKALIKE_CHANGES[int(rng.integers(len(LOOKALIKE_CHANGES)))]:
                twin[key] = fresh[key]
            person = twin
        people[pid] = person
    return people


# ---------------------------------------------------------------------------------------------
# Cameras


def make_camera(cfg: SynthConfig, seed: int, cam: int) -> Camera:
    rng = seeded_rng(seed, 7, cam)
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


def cast(cfg: SynthConfig, seed: int) -> tuple[list[int], list[int], dict[int, dict]]:
    """The training pids, the test pids (after them) and every one's attributes."""
    train_pids = list(range(1, cfg.num_train_ids + 1))
    test_pids = list(range(cfg.num_train_ids + 1, cfg.num_train_ids + cfg.num_test_ids + 1))
    return train_pids, test_pids, {**identities(cfg, seed, train_pids, 1), **identities(cfg, seed, test_pids, 2)}


def train_cameras(cfg: SynthConfig, rng: np.random.Generator) -> list[int]:
    """The cameras that see one training identity, in the order drawn."""
    size = min(int(rng.integers(cfg.cameras_per_id[0], cfg.cameras_per_id[1] + 1)), cfg.num_cameras)
    return [int(c) for c in rng.choice(cfg.num_cameras, size=size, replace=False)]


def test_cameras(cfg: SynthConfig, rng: np.random.Generator) -> list[int]:
    """The cameras that see one test identity, at least two, sorted."""
    size = max(2, min(int(rng.integers(cfg.cameras_per_id[0], cfg.cameras_per_id[1] + 1)), cfg.num_cameras))
    return sorted(int(c) for c in rng.choice(cfg.num_cameras, size=size, replace=False))


def gallery_visits(cfg: SynthConfig, rng: np.random.Generator) -> range:
    """Keys of a test identity's gallery images (or tracklets) in one camera; the query's is 0."""
    return range(1, int(rng.integers(cfg.gallery_per_camera[0], cfg.gallery_per_camera[1] + 1)) + 1)
