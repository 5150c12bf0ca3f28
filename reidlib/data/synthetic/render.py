"""Drawing the synthetic benchmark's crops: one person, seen by one camera (:mod:`reidlib.data.synthetic`).

A person is drawn at twice the crop size from simple shapes (head, hair or hat, torso with its
pattern and logo, arms, legs, shoes, bag), in one of four views, then the camera's look is applied:
resolution, blur, colour cast, brightness, gamma and noise.

What varies between crops of one person in one camera is a :class:`Pose`: a still image draws one
(:func:`draw_pose`, :func:`render`); a tracklet draws a :class:`Walk` once (a base pose, a heading,
a gait, a change of light) and from it each frame's pose with a little jitter of its own
(:func:`walk_pose`), so that its frames differ far less than two crops of the person do.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HEIGHT, WIDTH = 128, 64  # Market-1501's crop size
SS = 2  # supersampling: draw at 2x, then downscale (smooth edges)
VIEWS = ("front", "back", "left", "right")
STRIDE = 0.08  # the widest leg swing, share of the person's height
CADENCE = (0.5, 1.0)  # a walking tracklet's gait: radians of leg swing per frame


@dataclass(frozen=True)
class Camera:
    """One camera's look: its scene and how it records (colour cast, gamma, brightness, blur,
    resolution, noise, distance)."""

    scene: np.ndarray  # (H*SS, 3*W*SS, 3) uint8 panorama; each image crops a window of it
    gains: tuple[float, float, float]
    gamma: float
    brightness: float
    blur: float
    lowres: float  # 1 = full resolution, else the factor it is recorded at
    noise: float
    distance: float


def _draw_person(
    draw: ImageDraw.ImageDraw, p: dict, view: str, cx: float, feet: float, tall: float, stride: float
) -> None:
    """Draw person ``p`` seen from ``view``, feet at (cx, feet), ``tall`` pixels high."""
    side = view in ("left", "right")
    facing = 1 if view == "right" else -1  # side views: which way the nose points
    top = feet - tall
    head_r = 0.065 * tall
    half = 0.15 * tall * p["build"] * (0.6 if side else 1.0)  # half torso width
    sh, waist, knee = top + 0.16 * tall, top + 0.52 * tall, top + 0.74 * tall
    ankle = feet - 0.04 * tall
    leg_w = 0.055 * tall * p["build"]

    # legs (behind the torso), with stride
    for sign in (-1, 1):
        hip_x = cx + (sign * 0.5 * half if not side else 0)
        foot_x = hip_x + sign * stride * tall * (1.0 if side else 0.35)
        lower_end = {"trousers": ankle, "shorts": knee - 0.02 * tall, "skirt": waist}[p["lower_type"]]
        leg = [(hip_x - leg_w, waist), (hip_x + leg_w, waist), (foot_x + leg_w, ankle), (foot_x - leg_w, ankle)]
        draw.polygon(leg, fill=p["skin"])
        if lower_end > waist:
            t = (lower_end - waist) / (ankle - waist)
            kx = hip_x + (foot_x - hip_x) * t
            draw.polygon(
                [(hip_x - leg_w, waist), (hip_x + leg_w, waist), (kx + leg_w, lower_end), (kx - leg_w, lower_end)],
                fill=p["lower"],
            )
        draw.ellipse(
            [foot_x - 1.5 * leg_w, ankle - 0.5 * leg_w, foot_x + 1.5 * leg_w + facing * side * leg_w, feet],
            fill=p["shoes"],
        )
    if p["lower_type"] == "skirt":
        draw.polygon(
            [(cx - half, waist - 2), (cx + half, waist - 2), (cx + 1.5 * half, knee), (cx - 1.5 * half, knee)],
            fill=p["lower"],
        )
    if p["lower_type"] == "shorts":
        draw.rectangle([cx - half, waist - 2, cx + half, waist + 0.05 * tall], fill=p["lower"])

    # backpack behind the torso when seen from the side
    if p["bag"] == "backpack" and side:
        bx = cx - facing * half
        draw.rectangle(
            [bx - 0.09 * tall, sh + 0.02 * tall, bx + 0.09 * tall, waist - 0.02 * tall], fill=p["bag_colour"]
        )

    # torso and its pattern
    sleeve = p["upper2"] if p["pattern"] == "sleeves" else p["upper"]
    arm_w = 0.045 * tall
    arms = [cx] if side else [cx - half - arm_w, cx + half + arm_w]
    for ax in arms:
        swing = stride * tall * 0.6 * (1 if ax >= cx else -1)
        draw.polygon(
            [(ax - arm_w, sh), (ax + arm_w, sh), (ax + swing + arm_w, waist), (ax + swing - arm_w, waist)], fill=sleeve
        )
        draw.ellipse([ax + swing - arm_w, waist - arm_w, ax + swing + arm_w, waist + arm_w], fill=p["skin"])
    draw.rectangle([cx - half, sh, cx + half, waist], fill=p["upper"])
    if p["pattern"] == "hstripes":
        band = (waist - sh) / 7
        for i in range(1, 7, 2):
            draw.rectangle([cx - half, sh + i * band, cx + half, sh + (i + 1) * band], fill=p["upper2"])
    elif p["pattern"] == "vstripes":
        band = 2 * half / 5
        for i in range(1, 5, 2):
            draw.rectangle([cx - half + i * band, sh, cx - half + (i + 1) * band, waist], fill=p["upper2"])
    if side and arms:  # the near arm crosses the torso in a side view
        swing = stride * tall * 0.6 * facing
        draw.polygon(
            [(cx - arm_w, sh), (cx + arm_w, sh), (cx + swing + arm_w, waist), (cx + swing - arm_w, waist)], fill=sleeve
        )
    if view == "front" and p["logo"] != "none":
        r, ly = 0.05 * tall, sh + 0.1 * tall
        box = [cx - r, ly - r, cx + r, ly + r]
        if p["logo"] == "circle":
            draw.ellipse(box, fill=p["logo_colour"])
        elif p["logo"] == "square":
            draw.rectangle(box, fill=p["logo_colour"])
        else:
            draw.polygon([(cx, ly - r), (cx + r, ly + r), (cx - r, ly + r)], fill=p["logo_colour"])
    if p["bag"] == "backpack" and view == "back":
        draw.rectangle([cx - 0.7 * half, sh + 0.03 * tall, cx + 0.7 * half, waist - 0.03 * tall], fill=p["bag_colour"])
    if p["bag"] == "backpack" and view == "front":  # straps only
        for sx in (cx - 0.55 * half, cx + 0.45 * half):
            draw.rectangle([sx, sh, sx + 0.1 * half, waist - 0.1 * tall], fill=p["bag_colour"])
    if p["bag"] == "shoulder" and view != "left":
        bx = cx + half if not side else cx
        draw.line([(cx - half, sh), (bx, waist - 0.04 * tall)], fill=p["bag_colour"], width=max(1, int(0.015 * tall)))
        draw.rectangle(
            [bx - 0.06 * tall, waist - 0.06 * tall, bx + 0.06 * tall, waist + 0.05 * tall], fill=p["bag_colour"]
        )

    # neck and head
    hy = sh - head_r * 0.9
    draw.rectangle([cx - 0.3 * head_r, hy, cx + 0.3 * head_r, sh + 1], fill=p["skin"])
    face = [cx - head_r, hy - head_r, cx + head_r, hy + head_r]
    draw.ellipse(face, fill=p["hair"] if view == "back" else p["skin"])
    if p["hair_style"] == "hat":
        draw.rectangle([cx - 1.25 * head_r, hy - 0.35 * head_r, cx + 1.25 * head_r, hy - 0.15 * head_r], fill=p["hat"])
        draw.ellipse([cx - head_r, hy - 1.15 * head_r, cx + head_r, hy], fill=p["hat"])
    else:
        draw.chord(face, 180, 360, fill=p["hair"])
        if p["hair_style"] == "long":
            back = cx - facing * head_r * 0.5 if side else cx
            if view != "front":
                draw.rectangle([back - 0.8 * head_r, hy, back + 0.8 * head_r, sh + 0.12 * tall], fill=p["hair"])
            else:
                for sx in (cx - head_r, cx + 0.65 * head_r):
                    draw.rectangle([sx, hy, sx + 0.35 * head_r, sh + 0.08 * tall], fill=p["hair"])


@dataclass(frozen=True)
class Pose:
    """What varies from one crop of a person to the next, within one camera (:func:`draw_pose`)."""

    window: int  # left edge of the crop in the camera's scene panorama (supersampled pixels)
    view: str  # one of VIEWS
    scale: float  # the person's height relative to the camera's distance, 1 + jitter
    dx: float  # the person's centre, right of the crop's centre (share of the crop width)
    dy: float  # the feet, below their usual place (share of the crop height)
    stride: float  # leg and arm swing (share of the person's height), in -STRIDE..STRIDE
    occluder: tuple[tuple[int, int, int, int], tuple[int, int, int]] | None  # (box, RGB), supersampled
    light: float  # brightness factor of this crop


def draw_pose(
    camera: Camera,
    rng: np.random.Generator,
    *,
    scale_jitter: float,
    offset_jitter: float,
    occlusion_prob: float,
) -> Pose:
    """The pose of one still crop by ``camera`` (the preset's ``scale_jitter``, ``offset_jitter`` and
    ``occlusion_prob``). The still presets' files depend on these draws and their order: keep both."""
    h, w = HEIGHT * SS, WIDTH * SS
    window = int(rng.integers(0, camera.scene.shape[1] - w))
    view = VIEWS[int(rng.integers(len(VIEWS)))]
    scale = 1 + rng.normal(0, scale_jitter)
    dx = rng.normal(0, offset_jitter)
    dy = rng.normal(0, offset_jitter / 2)
    stride = float(rng.uniform(-STRIDE, STRIDE))
    occluder = None
    if rng.random() < occlusion_prob:  # a pole, a car, a passer-by's shoulder
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:
            top = int(h * rng.uniform(0.6, 0.8))
            occluder = ((0, top, w, h), colour)
        else:
            left = int(rng.choice([0, w * rng.uniform(0.6, 0.8)]))
            occluder = ((left, 0, left + int(w * rng.uniform(0.2, 0.35)), h), colour)
    light = float(rng.uniform(0.9, 1.1))
    return Pose(window, view, float(scale), float(dx), float(dy), stride, occluder, light)


def paint(person: dict, camera: Camera, pose: Pose, rng: np.random.Generator) -> Image.Image:
    """The crop of ``person`` in ``pose`` by ``camera``; ``rng`` draws the sensor noise only."""
    h, w = HEIGHT * SS, WIDTH * SS
    img = Image.fromarray(camera.scene[:, pose.window : pose.window + w].copy())
    draw = ImageDraw.Draw(img)
    tall = h * camera.distance * person["height"] * pose.scale
    cx = w / 2 + pose.dx * w
    feet = h - 0.04 * h + pose.dy * h
    feet = min(max(feet, tall + 2), h + 0.05 * h)
    _draw_person(draw, person, pose.view, cx, feet, tall, stride=pose.stride)
    if pose.occluder is not None:
        box, colour = pose.occluder
        draw.rectangle(box, fill=colour)

    size = (max(8, round(WIDTH * camera.lowres)), max(16, round(HEIGHT * camera.lowres)))
    img = img.resize(size, Image.BILINEAR)
    if size != (WIDTH, HEIGHT):
        img = img.resize((WIDTH, HEIGHT), Image.BILINEAR)
    if camera.blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(camera.blur))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = x * np.asarray(camera.gains, dtype=np.float32) * camera.brightness * pose.light
    x = np.clip(x, 0, 1) ** camera.gamma
    x = x * 255.0 + rng.normal(0, camera.noise, x.shape).astype(np.float32)
    return Image.fromarray(np.clip(x + 0.5, 0, 255).astype(np.uint8))


def render(
    person: dict,
    camera: Camera,
    rng: np.random.Generator,
    *,
    scale_jitter: float,
    offset_jitter: float,
    occlusion_prob: float,
) -> Image.Image:
    """One still crop of ``person`` by ``camera``: a pose drawn from ``rng`` (:func:`draw_pose`), then
    painted with the same ``rng`` drawing the noise."""
    pose = draw_pose(camera, rng, scale_jitter=scale_jitter, offset_jitter=offset_jitter, occlusion_prob=occlusion_prob)
    return paint(person, camera, pose, rng)


@dataclass(frozen=True)
class Walk:
    """A tracklet: one person walking through one camera's crop for ``frames`` frames (:func:`draw_walk`).

    Every frame keeps the base pose's view and scene window; the person moves ``shift`` (share of
    the crop width) from the first frame to the last, the legs swing with the gait's ``phase`` and
    ``cadence`` (radians, per frame), the light changes by ``light`` (share) over the tracklet, and
    the base pose's occluder, if any, shows on the ``occluded`` frames only (someone passing by).
    """

    base: Pose
    frames: int
    shift: float
    phase: float
    cadence: float
    light: float
    occluded: range


def draw_walk(
    camera: Camera,
    rng: np.random.Generator,
    frames: int,
    *,
    walk: float,
    light_drift: float,
    scale_jitter: float,
    offset_jitter: float,
    occlusion_prob: float,
) -> Walk:
    """A tracklet of ``frames`` frames by ``camera``: a base pose as a still crop's (:func:`draw_pose`),
    a walk of ``walk`` crop widths (to the side the person faces; either way when seen from the front
    or back) and a brightness change of ``light_drift``, up or down."""
    base = draw_pose(camera, rng, scale_jitter=scale_jitter, offset_jitter=offset_jitter, occlusion_prob=occlusion_prob)
    heading = float(rng.choice((-1.0, 1.0)))
    if base.view in ("left", "right"):
        heading = 1.0 if base.view == "right" else -1.0
    phase = float(rng.uniform(0, 2 * np.pi))
    cadence = float(rng.uniform(*CADENCE))
    light = light_drift * float(rng.choice((-1.0, 1.0)))
    first = int(rng.integers(frames))
    last = int(rng.integers(first, frames))
    occluded = range(first, last + 1) if base.occluder is not None else range(0)
    return Walk(base, frames, heading * walk, phase, cadence, light, occluded)


def walk_pose(walk: Walk, frame: int, rng: np.random.Generator, *, scale_jitter: float, offset_jitter: float) -> Pose:
    """The pose of frame ``frame`` (from 0) of ``walk``, with its own small jitter of scale and
    offset drawn from ``rng`` (``scale_jitter`` and ``offset_jitter`` as in :func:`draw_pose`)."""
    t = frame / max(walk.frames - 1, 1) - 0.5  # -0.5 at the first frame, 0.5 at the last
    base = walk.base
    return replace(
        base,
        scale=base.scale * (1 + float(rng.normal(0, scale_jitter))),
        dx=base.dx + walk.shift * t + float(rng.normal(0, offset_jitter)),
        dy=base.dy + float(rng.normal(0, offset_jitter / 2)),
        stride=STRIDE * float(np.sin(walk.phase + walk.cadence * frame)),
        occluder=base.occluder if frame in walk.occluded else None,
        light=base.light * (1 + walk.light * t),
    )
