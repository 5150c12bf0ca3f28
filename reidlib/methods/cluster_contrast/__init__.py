"""Cluster Contrast (Dai, Wang, Yuan, Song, Wang; ACCV 2022), the clustering family, in the same loop.

- :mod:`reidlib.methods.cluster_contrast.clustering`: pseudo-labels by DBSCAN on the k-reciprocal
  Jaccard distance, the centroids, the P x K batches, and how good the labels are;
- :mod:`reidlib.methods.cluster_contrast.learner`: :class:`ClusterContrast`, the method
  object that answers the loop's hooks.
"""

from reidlib.methods.cluster_contrast.learner import ClusterContrast

__all__ = ["ClusterContrast"]
