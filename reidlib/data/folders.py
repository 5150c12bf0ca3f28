"""Images found in folders: which files are images, every image below a folder, and the camera
named by the first sub-folder below a root (``ROOT/<camera>/...``).

Shared by the camera-folder layout (:func:`reidlib.data.layouts.read_camera_folders`) and by
search (:mod:`reidlib.retrieval.embedding`, ``embed`` and ``query``), so both find images and cameras by one
rule. Nothing is skipped silently: a file that is not an image (by its extension) is an error
naming it, the known non-images of :data:`IGNORED_FILES` aside.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from reidlib.errors import DataError

IGNORED_FILES = ("Thumbs.db", ".DS_Store", "readme.txt", "manifest.json")  # known non-images


def image_extensions() -> frozenset[str]:
    """The file extensions of every image type Pillow can open (``.jpg``, ``.png``, ``.bmp``, ...)."""
    return frozenset(ext for ext, kind in Image.registered_extensions().items() if kind in Image.OPEN)


def list_images(folder: Path) -> list[Path]:
    """Every image below ``folder`` (recursively, sorted); [] when there is none.

    A file that is not an image by its extension is a DataError naming it.
    """
    known = image_extensions()
    images = []
    for file in sorted(p for p in folder.rglob("*") if not p.is_dir()):
        if file.name in IGNORED_FILES:
            continue
        if file.suffix.lower() not in known:
            raise DataError(f"{file}: not an image (by its extension); move it out of {folder}")
        images.append(file)
    return images


def find_images(path: str | Path) -> list[Path]:
    """One image, or every image below a folder (:func:`list_images`), as absolute paths; a folder
    with no image is a DataError."""
    path = Path(path).absolute()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such image or folder")
    images = list_images(path)
    if not images:
        raise DataError(f"{path}: no images in this folder or below it")
    return images


def folder_cameras(root: str | Path, paths: list[Path]) -> tuple[np.ndarray, np.ndarray] | None:
    """The camera of each image from the first sub-folder below ``root`` (deeper folders belong
    to it): ``camids`` (n,) int64 counting the names in sorted order, and the names (n,). None when
    some image lies directly in ``root`` (or ``root`` is no folder)."""
    root = Path(root)
    if not root.is_dir():
        return None
    below = [Path(p).relative_to(root).parts for p in paths]
    if not all(len(parts) > 1 for parts in below):
        return None
    names = np.array([parts[0] for parts in below])
    _, camids = np.unique(names, return_inverse=True)
    return camids.astype(np.int64), names


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding it; an empty or unidentifiable
    file is a DataError naming it (a truncated one is found only when decoded,
    :func:`reidlib.data.read_image`)."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty image file (0 bytes)")
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable image ({err})") from err
