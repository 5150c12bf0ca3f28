"""Cluster Contrast (Dai, Wang, Yuan, Song, Wang; ACCV 2022) as a training method: pseudo-labels by
clustering, one memory slot per cluster, and an InfoNCE loss over every cluster's centroid.

Shape letters: B batch, N training images, D feature dim, C clusters, K images of one cluster in a
batch, P = B / K clusters in a batch.

At each epoch's start (:meth:`ClusterContrast.start_epoch`, :mod:`reidlib.methods.cluster_contrast.clustering`):

1. one pass of the model gives every training image's global feature (N, D);
2. DBSCAN on their k-reciprocal Jaccard distance gives the pseudo-labels (N,), -1 an outlier;
3. the cluster memory (C, D) is rebuilt from the clusters' normalised mean features;
4. the epoch's batches hold P clusters x K images each; outliers are left out of the epoch.

Each step (the loop in :mod:`reidlib.engine.trainer` calls the hooks in this order):

1. the model gives global features g (B, D) (the stripes are not trained, as published);
2. :meth:`ClusterContrast.select` looks up the batch's pseudo-labels (B,);
3. :meth:`ClusterContrast.loss`: InfoNCE over all C centroids (:func:`reidlib.methods.losses.cluster_contrast_loss`);
4. the loop runs ``backward()`` and the optimiser step;
5. :meth:`ClusterContrast.update`, only then: each cluster in the batch moves its centroid toward
   its images' features, ``normalise(mu * old + (1 - mu) * new)``.

Labels never reach the loss: the training identities only *measure* the pseudo-labels
(:func:`reidlib.methods.cluster_contrast.clustering.label_stats`, in every metrics row); when they are unknown (camera
folders), the figures that need them are None and the log says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from reidlib.config import ClusterConfig, Config
from reidlib.data import ImageRecord, identities_known
from reidlib.errors import ConfigError
from reidlib.methods.cluster_contrast import clustering
from reidlib.methods.hooks import Gather, TrainFeatures
from reidlib.methods.losses import ClusterContrastLosses, cluster_contrast_loss
from reidlib.methods.memory import MemoryBank
from reidlib.model import Features
from reidlib.utils import distributed as dist

log = logging.getLogger(__name__)


class ClusterContrast:
    """Cluster Contrast over its pseudo-labels and cluster memory.

    The memory is a :class:`~reidlib.methods.memory.MemoryBank` of C slots, rebuilt at every epoch's start.
    Its update differs from the public code's in one way: the public code (``ClusterMemory``)
    rewrites the memory inside ``backward``, one image after the other, so a cluster with K images
    in the batch ends up mostly at the *last* of them (weights 0.9, 0.09, ... for mu 0.1); here a
    cluster moves once, after the optimiser step, toward the *mean* of its images in the batch,
    ``normalise(mu * old + (1 - mu) * mean)``, which does not depend on the batch's order.

    Args:
        cluster_cfg: config section ``cluster``.
        feat_dim: D.
        train_pids: (N,) training identities, for the diagnostics only (all
            :data:`~reidlib.data.UNKNOWN_PID` when unknown).
    """

    loss_names = ClusterContrastLosses._fields
    unused_parameters = True  # the stripe heads get no gradient
    supervised = None  # the identities only measure the pseudo-labels

    def __init__(self, cluster_cfg: ClusterConfig, feat_dim: int, train_pids: Tensor) -> None:
        self.cfg, self.feat_dim, self.train_pids = cluster_cfg, feat_dim, train_pids
        self.identities_known = identities_known(train_pids)
        self.labels = torch.full_like(train_pids, -1)  # (N,) the epoch's pseudo-labels; -1 an outlier
        self.memory = self._memory(0)  # (C, D) the clusters' centroids

    @classmethod
    def build(cls, cfg: Config, train_pids: Tensor, train_camids: Tensor, device: torch.device) -> ClusterContrast:
        """Cluster Contrast as ``cfg`` sets it up, with no clusters yet, on ``device``."""
        return cls(cfg.cluster, cfg.model.feat_dim, train_pids.to(device))

    @classmethod
    def fit(cls, cfg: Config, train: Sequence[ImageRecord]) -> Config:
        """Nothing to fit: the clusters follow the data."""
        return cfg

    @classmethod
    def check(cls, cfg: Config, train: Sequence[ImageRecord]) -> None:
        if cfg.cluster.cluster_k1 >= len(train):
            raise ConfigError(
                f"cluster.cluster_k1 ({cfg.cluster.cluster_k1}) must be below the {len(train)} training images"
            )

    def _memory(self, clusters: int) -> MemoryBank:
        return MemoryBank(clusters, (self.feat_dim,), self.cfg.cluster_momentum).to(self.train_pids.device)

    # -- memory ---------------------------------------------------------------------------------

    def init_memory(self, features: TrainFeatures) -> None:
        """Nothing before the first epoch: every epoch's start clusters and builds the memory."""

    def start_epoch(self, epoch: int, generator: torch.Generator, features: TrainFeatures, resumed: bool) -> None:
        """Cluster the training features and rebuild the cluster memory from the clusters' means;
        a run resumed inside the epoch keeps the labels and memory of its checkpoint."""
        if resumed:
            return
        c = self.cfg
        g = features("clustering features").global_  # (N, D)
        pairs = clustering.jaccard_pairs(g, c.cluster_k1, c.cluster_k2)
        self.labels = clustering.pseudo_labels(pairs, len(g), eps=c.cluster_eps, min_samples=c.min_samples).to(g.device)
        clusters = clustering.num_clusters(self.labels)
        self.memory = self._memory(clusters)
        self.memory.fill(clustering.cluster_centroids(g, self.labels, clusters))
        if not clusters:
            log.warning(
                "epoch %d: DBSCAN found no cluster (every image an outlier): the epoch trains nothing", epoch + 1
            )

    def batches(self, epoch: int, batch_size: int, seed: int, ctx: dist.Context) -> list[list[int]]:
        """P clusters x K images a batch (:func:`~reidlib.methods.cluster_contrast.clustering.pk_batches`),
        outliers left out;
        ``cluster_iters`` steps, or as many as an SCL epoch has. Every process draws the same
        batches (seeded by the run's seed and the epoch) and takes every world-th one."""
        steps = self.cfg.cluster_iters or (len(self.labels) // ctx.world) // batch_size
        generator = torch.Generator().manual_seed(seed * 10_007 + epoch)
        every = clustering.pk_batches(self.labels, self.cfg.num_instances, batch_size, steps * ctx.world, generator)
        return every[ctx.rank :: ctx.world].tolist()

    # -- the step -------------------------------------------------------------------------------

    def select(self, out: Features, idx: Tensor) -> Tensor:
        """The batch's pseudo-labels (B,), each in [0, C)."""
        return self.labels[idx]

    def loss(self, out: Features, labels: Tensor) -> ClusterContrastLosses:
        return ClusterContrastLosses(
            cluster_contrast_loss(out.global_, self.memory.features, labels, temperature=self.cfg.cluster_temperature)
        )

    @torch.no_grad()
    def update(self, out: Features, idx: Tensor, labels: Tensor, gather: Gather) -> None:
        """Move each cluster of every process's batch toward its images' mean global feature."""
        self.memory.update(gather(labels), gather(out.global_.detach()))

    # -- diagnostics ----------------------------------------------------------------------------

    def empty_stats(self) -> Tensor:
        return torch.zeros(0, dtype=torch.float64)  # the labels' diagnostics need no per-step sums

    def step_stats(self, labels: Tensor, idx: Tensor) -> Tensor:
        return self.empty_stats()

    def summarize(self, epoch: int, stats: Tensor) -> dict[str, Any]:
        return clustering.label_stats(self.labels, self.train_pids if self.identities_known else None)._asdict()

    def describe(self, row: dict[str, Any]) -> str:
        parts = [
            f"{row['clusters']} clusters",
            f"outliers {100 * row['outlier_share']:.1f}%",
            f"largest {row['largest_cluster']}",
        ]
        if row["pair_precision"] is not None:
            parts.append(f"pair precision {100 * row['pair_precision']:.1f}%")
        if row["pair_recall"] is not None:
            parts.append(f"recall {100 * row['pair_recall']:.1f}%")
        if row["cluster_ari"] is not None:
            parts.append(f"ARI {row['cluster_ari']:.3f}, NMI {row['cluster_nmi']:.3f}")
        text = ", ".join(parts)
        return text if self.identities_known else f"identities unknown (no ARI, NMI or pair precision); {text}"

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"cluster_labels": self.labels, "cluster_memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.labels = state["cluster_labels"].to(self.train_pids.device)
        self.memory = self._memory(len(state["cluster_memory"]["features"]))
        self.memory.load_state_dict(state["cluster_memory"])

    def buffers(self) -> tuple[Tensor, ...]:
        return self.labels, self.memory.features
