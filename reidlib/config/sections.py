"""The config's sections: one frozen dataclass per section, and each set of choices, listed once.

Loading, overrides and validation are in :mod:`reidlib.config`, which also re-exports every name
here (``from reidlib.config import SCLConfig`` keeps working). Every field name is unique across
the sections, so an override may name a field by its short name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from reidlib.errors import ConfigError

# -- checks: each section checks its own fields (Config.check adds the checks across sections) ---


def _in_unit(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"config key {key!r} must lie in [0, 1], got {value}")


def _one_of(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"config key {key!r} must be one of {', '.join(choices)}; got {value!r}")


def _at_least(section: str, bound: int | float, **values: int | float) -> None:
    """Each of ``values`` (field name -> value) must be >= ``bound``."""
    for name, value in values.items():
        if value < bound:
            raise ConfigError(f"config key '{section}.{name}' must be >= {bound}, got {value}")


def _above_zero(section: str, **values: int | float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"config key '{section}.{name}' must be > 0, got {value}")


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how they are turned into tensors."""

    data_dir: str = ""  # dataset root; the command line's --data sets it
    layout: str = "auto"  # auto | market1501 | dukemtmc | msmt17 | cuhk03 | cameras
    height: int = 256
    width: int = 128
    flip: bool = True
    pad: int = 10
    random_erasing: float = 0.5
    color_jitter: float = 0.0  # brightness / contrast / saturation jitter strength (0: the paper's)
    num_workers: int = 0
    # decode and resize every image once and hold the uint8 crops in memory (24 KiB each at
    # 128x64): an epoch then spends no time decoding JPEGs or resizing
    cache_images: bool = False
    # video sets (tracklets, reidlib.data.video): frames drawn from each tracklet at every training
    # step, one from each of this many equal segments, their features averaged into the tracklet's
    sample_frames: int = 4
    # frames of a tracklet whose features are averaged when memory is filled and in evaluation,
    # evenly spaced; 0: every frame
    max_frames: int = 0

    def check(self) -> None:
        _one_of("data.layout", self.layout, LAYOUTS)
        _at_least("data", 0, pad=self.pad, num_workers=self.num_workers, max_frames=self.max_frames)
        _above_zero("data", height=self.height, width=self.width, sample_frames=self.sample_frames)
        _in_unit("data.random_erasing", self.random_erasing)
        _in_unit("data.color_jitter", self.color_jitter)


@dataclass(frozen=True)
class ModelConfig:
    """The backbone and the global / stripe heads (see :mod:`reidlib.model`)."""

    arch: str = "resnet50"  # resnet50 | resnet18 | mobilenet_v2 | resnet_mini
    feat_dim: int = 2048  # D; each of the P stripes gets D / P
    num_parts: int = 8  # P
    pretrained: str | None = None  # None | "imagenet" | a local file
    last_stride: int = 1

    def check(self) -> None:
        _above_zero("model", feat_dim=self.feat_dim, num_parts=self.num_parts)
        if self.feat_dim % self.num_parts:
            raise ConfigError(
                f"model.feat_dim ({self.feat_dim}) must be divisible by model.num_parts ({self.num_parts})"
            )


@dataclass(frozen=True)
class SCLConfig:
    """Selective contrastive learning: selection, loss weights and the three memory banks."""

    k: int = 7  # K positives besides the image's own slot
    m: int | None = 500  # M selected negatives; None = every remaining slot ("all negatives")
    temperature: float = 0.1  # tau
    lambda_t: float = 0.5  # weight of the own slot among the positives
    alpha: float = 1.75  # scale of the neighbours' weight alpha * (1 - lambda_t) / K
    lambda_p: float = 0.5  # part loss weight; the global loss gets 1 - lambda_p
    lambda_g: float = 0.5  # global share of the selection distance; parts get 1 - lambda_g
    lambda_c: float = 0.05  # distance added to same-camera slots (cross-camera encouragement)
    bank_momentum: float = 0.5  # global / part bank: slot <- normalise(mu * old + (1 - mu) * new)
    # storage of the three banks: float32 | float16 (half the memory: 11.4 GiB instead of 22.9 for
    # 1M slots of D = 2048; every read converts to float32, every write rounds to float16)
    bank_dtype: str = "float32"
    mixture_update: str = "positives"  # positives (public code) | own
    mixture_init: str = "zeros"  # zeros (public code) | features
    # which features write the mixture bank: both (public code: g, then the concatenated stripes)
    # | combined (one write of normalise(g + stripes)) | global | parts. An arm that trains one
    # feature space alone should let only that space write, or its loss chases targets half made
    # of the other, untrained space.
    mixture_writers: str = "both"
    # where the concatenated stripes (norm sqrt(P)) meet the mixture bank: sqrt_p (public code:
    # as they are) | unit (divided by sqrt(P) in the writes and in the part loss's logits) |
    # unit_writes | unit_loss (one half each, to measure them apart)
    part_scale: str = "sqrt_p"
    warmup_epochs: int = 3  # own slot only, random negatives
    # Which of the k nearest candidates become positives (docs/method.md, "Beyond the paper"):
    # knn (the paper: all k) | reciprocal (those whose own reciprocal_k nearest hold the anchor)
    # | cycle (adaptive k, after MPLP: nearest first, up to the first that fails that check)
    # | jaccard | ca_jaccard (the k nearest by k-reciprocal Jaccard distance below jaccard_eps,
    # computed on the banks once per epoch; ca_ builds the reciprocal sets within and across cameras)
    # | camera_groups (groups within cameras, linked across cameras; group_intra_k, group_inter_k)
    positive_rule: str = "knn"
    reciprocal_k: int = 20  # reciprocal / cycle: length of each slot's own neighbour list
    pos_max_distance: float | None = None  # candidates farther than this (selection distance) are dropped
    jaccard_k1: int = 20  # jaccard: k of the k-reciprocal sets (Zhong et al. 2017)
    jaccard_k2: int = 6  # jaccard / ca_jaccard: local query expansion over this many neighbours
    jaccard_eps: float = 0.6  # jaccard / ca_jaccard: positives lie below this Jaccard distance
    ca_k_intra: int = 5  # ca_jaccard: reciprocal neighbours within the anchor's camera
    ca_k_inter: int = 20  # ca_jaccard: reciprocal neighbours across cameras
    # camera_groups (after IICS, CVPR 2021, and CAP, AAAI 2021): within each camera, slots that are
    # mutual group_intra_k nearest form groups; groups of other cameras that are mutual
    # group_inter_k nearest by their mean features are linked; an anchor's positives are the other
    # members of its group and of the groups linked to it (at most k)
    group_intra_k: int = 1
    group_inter_k: int = 2
    # camera_groups: none | ca_jaccard (after its groups, an anchor's positives are filled up to k
    # with its ca_jaccard positives, those not already in: the groups vouch across cameras, the
    # k-reciprocal sets reach the rest of an identity's crops in the anchor's own camera)
    group_fill: str = "none"
    # keep a candidate only if at least this many stripes also rank it among their
    # part_agreement_k nearest (after PPLR); 0 turns the check off
    part_agreement: int = 0
    part_agreement_k: int = 20
    # remove each camera's mean (mean) or mean and spread (mean_std) from the features before
    # the selection distance, then renormalise (camera debiasing); none keeps them as they are
    camera_debias: str = "none"
    # lambda_c schedule: linear from lambda_c_start at the first selecting epoch to lambda_c at
    # the last epoch; None keeps lambda_c throughout
    lambda_c_start: float | None = None
    # the nearest this many non-positives (by the selection distance) are left out of the negatives:
    # neither pulled nor pushed (an ambiguous band, where unadmitted true matches sit)
    negative_band: int = 0
    # jaccard / ca_jaccard: also admit as positives up to this many slots from other cameras that are
    # mutual neighbours across cameras (each among the other's cross_camera_k nearest in other
    # cameras, on the selection distance), by their own rule: the stripes' check is not applied
    cross_camera_positives: int = 0
    cross_camera_k: int = 1
    # a SUPERVISED diagnostic, never a recipe: the identities choose (docs/method.md, "The ceiling").
    # ceiling: every true match a positive, no true match a negative; positives: every true match a
    # positive, the rule's negatives; negatives: the rule's positives, no true match a negative
    oracle: str = "none"

    def check(self) -> None:
        for name in ("lambda_t", "lambda_p", "lambda_g", "bank_momentum"):
            _in_unit(f"scl.{name}", getattr(self, name))
        _at_least("scl", 0, lambda_c=self.lambda_c, alpha=self.alpha, k=self.k, warmup_epochs=self.warmup_epochs)
        _above_zero("scl", temperature=self.temperature)
        if self.m is not None and self.m < 0:
            raise ConfigError(f"config key 'scl.m' must be >= 0 or null (all negatives), got {self.m}")
        _one_of("scl.mixture_update", self.mixture_update, ("positives", "own"))
        _one_of("scl.mixture_init", self.mixture_init, ("zeros", "features"))
        _one_of("scl.mixture_writers", self.mixture_writers, MIXTURE_WRITERS)
        _one_of("scl.part_scale", self.part_scale, PART_SCALES)
        _one_of("scl.positive_rule", self.positive_rule, POSITIVE_RULES)
        _one_of("scl.camera_debias", self.camera_debias, CAMERA_DEBIAS)
        _at_least(
            "scl",
            1,
            **{
                name: getattr(self, name)
                for name in (
                    "reciprocal_k",
                    "jaccard_k1",
                    "jaccard_k2",
                    "ca_k_intra",
                    "ca_k_inter",
                    "part_agreement_k",
                    "group_intra_k",
                    "group_inter_k",
                )
            },
        )
        if not 0 < self.jaccard_eps <= 1:
            raise ConfigError(f"config key 'scl.jaccard_eps' must lie in (0, 1], got {self.jaccard_eps}")
        if self.lambda_c_start is not None and self.lambda_c_start < 0:
            raise ConfigError(f"config key 'scl.lambda_c_start' must be >= 0 or null, got {self.lambda_c_start}")
        _one_of("scl.bank_dtype", self.bank_dtype, ("float32", "float16"))
        _at_least("scl", 0, negative_band=self.negative_band, cross_camera_positives=self.cross_camera_positives)
        _at_least("scl", 1, cross_camera_k=self.cross_camera_k)
        _one_of("scl.oracle", self.oracle, ORACLES)
        _one_of("scl.group_fill", self.group_fill, ("none", "ca_jaccard"))
        if self.group_fill != "none" and self.positive_rule != "camera_groups":
            raise ConfigError(
                f"config key 'scl.group_fill' goes with scl.positive_rule camera_groups, not {self.positive_rule!r}"
            )
        if self.cross_camera_positives and self.positive_rule not in ("jaccard", "ca_jaccard", "camera_groups"):
            raise ConfigError(
                f"config key 'scl.cross_camera_positives' goes with scl.positive_rule jaccard, ca_jaccard or "
                f"camera_groups, not {self.positive_rule!r}"
            )


@dataclass(frozen=True)
class SearchConfig:
    """Neighbour search for selection (reidlib/neighbours/searchers.py, reidlib/neighbours/faiss_index.py).

    ``backend``: torch = exact; faiss = the index below, its candidates re-ranked exactly; auto =
    torch below search.AUTO_FAISS_MIN_SLOTS slots (and on an accelerator), faiss from there on.
    ``scl.m`` = null always searches exactly. The table rules follow the same choice (TableMiner).
    """

    backend: str = "auto"  # auto | torch | faiss
    faiss_index: str = "ivf"  # flat (exact, N x E float32; GPU with faiss-gpu) | ivf | ivf_sq8 (8-bit codes; CPU)
    faiss_dim: int = 256  # ivf: PCA to this many dims before indexing; 0 keeps all 2D + cameras
    nlist: int = 0  # ivf: k-means cells; 0 = 4 sqrt(N)
    nprobe: int = 256  # ivf: cells visited per anchor (nprobe >= nlist visits all; capped if nlist is 0)
    rerank: float = 2.0  # ivf: candidates re-ranked exactly per anchor, as a multiple of k + m + 1
    # the per-epoch graph (neighbours/slot_search.py): exact with torch (auto: below 20,000 slots), else an index/camera
    graph_index: str = "ivf_sq8"  # flat (exact) | ivf | ivf_sq8 (8-bit codes, re-ranked exactly) | hnsw
    graph_dim: int = 128  # ivf / hnsw: PCA to this many dims; 0 keeps all 2D
    graph_rerank: float = 2.0  # ivf / hnsw: candidates per camera re-ranked exactly, a multiple of k + 1
    graph_nprobe: int = 64  # ivf, ivf_sq8: cells visited per query (64: 0.95 of the 10 nearest at 1M)
    graph_ef: int = 64  # hnsw: the search's beam width (raised to the candidates asked for)
    graph_exact_below: int = 1000  # a camera of fewer slots is searched exactly; 0: the index on every one

    def check(self) -> None:
        _one_of("search.backend", self.backend, SEARCH_BACKENDS)
        _one_of("search.faiss_index", self.faiss_index, FAISS_INDEXES)
        _one_of("search.graph_index", self.graph_index, GRAPH_INDEXES)
        _at_least("search", 0, graph_dim=self.graph_dim, graph_exact_below=self.graph_exact_below)
        _at_least("search", 1, graph_rerank=self.graph_rerank, graph_nprobe=self.graph_nprobe, graph_ef=self.graph_ef)
        _at_least("search", 0, faiss_dim=self.faiss_dim, nlist=self.nlist)
        _at_least("search", 1, nprobe=self.nprobe, rerank=self.rerank)
        if self.nlist and self.nprobe > self.nlist:
            raise ConfigError(f"config key 'search.nprobe' ({self.nprobe}) must be <= search.nlist ({self.nlist})")


@dataclass(frozen=True)
class ClusterConfig:
    """Cluster Contrast (Dai et al., ACCV 2022; :mod:`reidlib.methods.cluster_contrast`): pseudo-labels by
    DBSCAN on the k-reciprocal Jaccard distance of the training features, re-clustered at every
    epoch's start; one memory slot per cluster. Read only when ``train.method: cluster_contrast``.
    """

    cluster_eps: float = 0.6  # DBSCAN's eps on the Jaccard distance, below 1 (the distance is sparse)
    min_samples: int = 4  # DBSCAN's min_samples (the slot itself included)
    cluster_k1: int = 30  # k of the k-reciprocal sets (the slot and its k1 - 1 nearest, as the public code)
    cluster_k2: int = 6  # local query expansion over this many nearest (the slot itself included)
    cluster_momentum: float = 0.1  # centroid <- normalise(mu * old + (1 - mu) * new)
    cluster_temperature: float = 0.05  # tau of the InfoNCE over all centroids
    num_instances: int = 16  # K images of each cluster in a batch; batch_size / K clusters a batch
    # steps an epoch; 0 takes as many as an SCL epoch (the training split / batch_size, the same
    # budget); the public code runs 200 (--iters) whatever the data's size
    cluster_iters: int = 0

    def check(self) -> None:
        if not 0 < self.cluster_eps < 1:  # pairs left out of the sparse distance lie at 1: never neighbours
            raise ConfigError(f"config key 'cluster.cluster_eps' must lie in (0, 1), got {self.cluster_eps}")
        _at_least(
            "cluster",
            1,
            min_samples=self.min_samples,
            cluster_k1=self.cluster_k1,
            cluster_k2=self.cluster_k2,
            num_instances=self.num_instances,
        )
        if self.cluster_k2 > self.cluster_k1:
            raise ConfigError(
                f"config key 'cluster.cluster_k2' ({self.cluster_k2}) must be <= cluster.cluster_k1 ({self.cluster_k1})"
            )
        _in_unit("cluster.cluster_momentum", self.cluster_momentum)
        _above_zero("cluster", cluster_temperature=self.cluster_temperature)
        _at_least("cluster", 0, cluster_iters=self.cluster_iters)


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop, and the method it trains (:data:`METHODS`)."""

    method: str = "scl"  # scl (selective contrastive learning) | cluster_contrast
    epochs: int = 50
    batch_size: int = 8
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "constant"  # constant | cosine | step
    lr_step: float = 0.7  # step: the lr drops by lr_gamma once this share of the epochs is done
    lr_gamma: float = 0.1
    seed: int = 0
    deterministic: bool = False
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    # hold weights and images channels-last (NHWC): MobileNetV2's convolutions at 128x64 train
    # about 1.35x faster on this project's CPU (measured with one thread, batch 64)
    channels_last: bool = False
    checkpoint_every: int = 0  # also checkpoint every N steps within an epoch (0: at epoch ends only)

    def check(self) -> None:
        _one_of("train.method", self.method, METHODS)
        _one_of("train.optimizer", self.optimizer, OPTIMIZERS)
        _one_of("train.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _in_unit("train.lr_step", self.lr_step)
        _in_unit("train.lr_gamma", self.lr_gamma)
        _at_least("train", 0, epochs=self.epochs, threads=self.threads, checkpoint_every=self.checkpoint_every)
        _above_zero("train", batch_size=self.batch_size, lr=self.lr)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation of the test split (query -> gallery)."""

    eval_every: int = 0  # evaluate every N epochs (0: only at the end)
    eval_batch_size: int = 64
    camera_aware: bool = False  # add lambda_c to same-camera pairs at test time (non-standard)
    # also embed each test crop mirrored left to right and sum the two features (then normalise):
    # common in re-ID code, twice the test forward passes; the training banks never use it
    flip_test: bool = False
    # global share of the test distance test_lambda_g |dg| + (1 - test_lambda_g) |dp| (the
    # "combined" figure); null: scl.lambda_g, the selection's share, as the public code
    test_lambda_g: float | None = None
    # a labelled set (a dataset root in a known layout) whose query and gallery evaluate the run
    # instead of data.data_dir's; "" evaluates on data.data_dir's own (camera folders have none)
    eval_data: str = ""

    def check(self) -> None:
        if self.test_lambda_g is not None:
            _in_unit("eval.test_lambda_g", self.test_lambda_g)
        _at_least("eval", 0, eval_every=self.eval_every)
        _above_zero("eval", eval_batch_size=self.eval_batch_size)


@dataclass(frozen=True)
class Config:
    """A whole experiment. Build it with :func:`load_config`, never by mutating one."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    scl: SCLConfig = field(default_factory=SCLConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """Every section's :meth:`check`, then the checks across sections (values that depend on the
        data, such as k + m against the training set's size, are checked when training starts)."""
        for section in dataclasses.fields(self):
            getattr(self, section.name).check()
        s, m = self.scl, self.model
        if not 0 <= s.part_agreement <= m.num_parts:
            raise ConfigError(
                f"config key 'scl.part_agreement' must lie in [0, model.num_parts = {m.num_parts}], "
                f"got {s.part_agreement}"
            )
        if self.train.method == "cluster_contrast" and self.train.batch_size % self.cluster.num_instances:
            raise ConfigError(
                f"config key 'cluster.num_instances' ({self.cluster.num_instances}) must divide train.batch_size "
                f"({self.train.batch_size}): a batch holds batch_size / num_instances clusters"
            )


# Each set of choices, listed once.
MIXTURE_WRITERS = ("both", "combined", "global", "parts")
PART_SCALES = ("sqrt_p", "unit", "unit_writes", "unit_loss")
POSITIVE_RULES = ("knn", "reciprocal", "cycle", "jaccard", "ca_jaccard", "camera_groups")
CAMERA_DEBIAS = ("none", "mean", "mean_std")
ORACLES = ("none", "ceiling", "positives", "negatives")  # scl.oracle: the supervised ceiling and its halves
SEARCH_BACKENDS = ("auto", "torch", "faiss")
FAISS_INDEXES = ("flat", "ivf", "ivf_sq8")
GRAPH_INDEXES = ("flat", "ivf", "ivf_sq8", "hnsw")
LAYOUTS = (
    "auto",
    "market1501",
    "dukemtmc",
    "msmt17",
    "cuhk03",
    "mars",
    "duke_video",
    "cameras",
)  # data.layout; reidlib.data.layouts reads each
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine", "step")
METHODS = ("scl", "cluster_contrast")  # train.method; reidlib.engine.state maps each to its class
