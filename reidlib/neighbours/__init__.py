"""Neighbour search over the memory slots: SCL's selection distance, exact and faiss searchers, the
per-epoch slot graph.

- :mod:`reidlib.neighbours.exact`: the one blocked "queries x items, then top-k" loop;
- :mod:`reidlib.neighbours.selection_distance`: the selection distance over the banks (camera
  debiasing included), built once per epoch and asked by everything below;
- :mod:`reidlib.neighbours.searchers`: each anchor's nearest slots, exactly or through a faiss index;
- :mod:`reidlib.neighbours.faiss_index`: the faiss indexes over the distance as an inner product;
- :mod:`reidlib.neighbours.slot_search`: each slot's nearest slots for the per-epoch graph, exactly
  or through one faiss index per camera (flat, IVF, HNSW) on the frozen banks;
- :mod:`reidlib.neighbours.graph`: rankings, k-reciprocal and camera-aware sets, Jaccard distance.
"""

from reidlib.neighbours.exact import distance_matrix, nearest, nearest_slots
from reidlib.neighbours.searchers import FaissSearcher, Searcher, TorchSearcher, make_searcher
from reidlib.neighbours.selection_distance import CameraDebias, SelectionDistance
from reidlib.neighbours.slot_search import SlotSearch, make_slot_search

__all__ = [
    "CameraDebias",
    "FaissSearcher",
    "Searcher",
    "SelectionDistance",
    "SlotSearch",
    "TorchSearcher",
    "distance_matrix",
    "make_searcher",
    "make_slot_search",
    "nearest",
    "nearest_slots",
]
