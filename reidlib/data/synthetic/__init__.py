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
(:class:`reidlib.data.synthetic.render.Walk`). Its frames are far more alike than two tracklets of the person
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

Modules: :mod:`~reidlib.data.synthetic.world` (settings, presets, people, cameras),
:mod:`~reidlib.data.synthetic.render` (drawing a person in a camera's scene),
:mod:`~reidlib.data.synthetic.stills` and :mod:`~reidlib.data.synthetic.tracklets` (what each
layout draws and writes); :func:`generate` here puts them together.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

from reidlib.data.synthetic.render import HEIGHT, WIDTH
from reidlib.data.synthetic.stills import still_counts, still_plan, write_stills
from reidlib.data.synthetic.tracklets import tracklet_counts, tracklet_plan, write_tracklets
from reidlib.data.synthetic.world import (
    GENERATOR_VERSION,
    PRESETS,
    STILL_FIELDS,
    TRACKLET_FIELDS,
    SynthConfig,
    make_camera,
)
from reidlib.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["PRESETS", "SynthConfig", "generate"]


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
        plan, write = tracklet_plan(cfg, seed), write_tracklets
        counts = tracklet_counts(cfg, plan)
    else:
        plan, write = still_plan(cfg, seed), write_stills
        counts = still_counts(cfg, plan)
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
    cameras = [make_camera(cfg, seed, c) for c in range(cfg.num_cameras)]
    write(out, cfg, seed, plan, cameras, f"synth {preset}")
    manifest_path.write_text(text)  # last: a folder without it is an interrupted run
    return manifest
