"""Neighbour search over the memory slots: exact and faiss searchers, the per-epoch slot graph."""
