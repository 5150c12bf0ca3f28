"""Searching your own crops with a trained run: ``embed`` a folder, ``query`` a gallery, see the page.

- :mod:`reidlib.retrieval.embedding`: a run's model, a folder's crops and cameras, their features,
  and the ``.npz`` features file with the model's fingerprint (``python -m reidlib embed``);
- :mod:`reidlib.retrieval.ranking`: each query's nearest gallery crops (``python -m reidlib query``);
- :mod:`reidlib.retrieval.page`: what ``query`` writes, ``index.html`` (one self-contained page up
  to 500 queries, else an index of pages) and ``ranks.csv``;
- :mod:`reidlib.retrieval.thumbnails`: each distinct crop's thumbnail, once, embedded in the one
  page or written to ``thumbs/`` for the pages.
"""

from reidlib.retrieval.embedding import embed, embed_images, load_features, load_run, save_features
from reidlib.retrieval.ranking import Ranking, query, rank_gallery

__all__ = ["Ranking", "embed", "embed_images", "load_features", "load_run", "query", "rank_gallery", "save_features"]
