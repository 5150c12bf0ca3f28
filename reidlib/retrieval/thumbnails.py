"""The pictures of the query page: one JPEG thumbnail, ``THUMB_HEIGHT`` pixels high (about 3 KB),
per distinct image the page shows, however many rows show it.

Shape letters: Q queries, k matches per query.

A page finds each thumbnail through a :class:`Picture`: either embedded in the page itself, as a
CSS class (``.t7 {background-image: url(data:...)}``) that every picture of that image names
(:func:`embedded_thumbnails`, the self-contained page), or as a file ``thumbs/ID.jpg`` beside the
pages, ID a hash of the image's path, the same in every run (:func:`thumbnail_files`, the pages).
"""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from reidlib.data import read_image

THUMB_HEIGHT = 128
THUMBS = "thumbs"  # the folder of thumbnail files, beside the pages


class Picture(NamedTuple):
    """Where a page finds one image's thumbnail, and the thumbnail's width in pixels."""

    src: str  # a CSS class of the page ("t7"), or a file relative to the page ("thumbs/ID.jpg")
    width: int


def picture_id(path: str) -> str:
    """The name of the thumbnail of the image at ``path``: 16 hex digits of the sha1 of the path."""
    return hashlib.sha1(path.encode()).hexdigest()[:16]


def thumbnail(path: str) -> tuple[int, bytes]:
    """The image at ``path`` as a JPEG ``THUMB_HEIGHT`` pixels high: its width and its bytes
    (a DataError naming the path if the image is unreadable or gone)."""
    img = read_image(path)
    width = max(1, round(img.width * THUMB_HEIGHT / img.height))
    buf = io.BytesIO()
    img.resize((width, THUMB_HEIGHT)).save(buf, format="JPEG", quality=85)
    return width, buf.getvalue()


def shown_paths(query_paths: np.ndarray, gallery_paths: np.ndarray, order: np.ndarray) -> list[str]:
    """Every image the rows show (each query, then its k matches; ``order`` (Q, k) gallery rows),
    once, in the order first shown."""
    shown = np.concatenate([np.asarray(query_paths)[:, None], np.asarray(gallery_paths)[order]], axis=1)  # (Q, 1 + k)
    return list(dict.fromkeys(str(p) for p in shown.reshape(-1)))


def embedded_thumbnails(paths: list[str], *, progress: bool = True) -> tuple[dict[str, Picture], str]:
    """Each image's thumbnail as a CSS class ``tN``: the pictures by path, and the classes' rules
    (for the page's ``<style>``), each image's bytes once."""
    pictures, rules = {}, []
    for n, path in enumerate(tqdm(paths, desc="thumbnails", unit="img", disable=not progress)):
        width, jpeg = thumbnail(path)
        pictures[path] = Picture(f"t{n}", width)
        uri = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        rules.append(f".t{n} {{ width: {width}px; background-image: url({uri}); }}")
    return pictures, "\n".join(rules)


def thumbnail_files(paths: list[str], folder: Path, *, progress: bool = True) -> dict[str, Picture]:
    """Each image's thumbnail written once, to ``folder/thumbs/ID.jpg``: the pictures by path."""
    (folder / THUMBS).mkdir()
    pictures = {}
    for path in tqdm(paths, desc="thumbnails", unit="img", disable=not progress):
        width, jpeg = thumbnail(path)
        name = f"{THUMBS}/{picture_id(path)}.jpg"
        (folder / name).write_bytes(jpeg)
        pictures[path] = Picture(name, width)
    return pictures
