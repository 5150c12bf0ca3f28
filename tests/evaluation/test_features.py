"""A model's features over records (reidlib.evaluation.features) on the test device: the CPU's
figures, image by image and averaged over a tracklet's frames, with and without the flip test."""

import numpy as np
import pytest
import torch

from reidlib.config import load_config
from reidlib.data import ImageRecord, tracklet
from reidlib.evaluation.features import extract_features
from reidlib.model import make_model
from tests.helpers import write_jpeg

TINY_MODEL = {"arch": "resnet_mini", "feat_dim": 32, "num_parts": 4, "height": 64, "width": 32, "eval_batch_size": 4}


@pytest.mark.parametrize("flip, channels_last", [(False, False), (True, True)])
def test_features_on_the_device_equal_the_cpus(tmp_path, device, flip, channels_last):
    paths = [str(write_jpeg(tmp_path / f"{i}.jpg", seed=i)) for i in range(9)]
    records = [ImageRecord(p, i // 2, i % 2) for i, p in enumerate(paths[:6])]
    records.append(tracklet(paths[6:], pid=9, camid=1))  # three frames, averaged
    cfg = load_config(overrides={**TINY_MODEL, "channels_last": channels_last})
    torch.manual_seed(0)
    model = make_model(cfg, torch.device("cpu"), load_pretrained=False)
    want = extract_features(model, records, cfg, torch.device("cpu"), "cpu", progress=False, flip=flip)
    got = extract_features(model.to(device), records, cfg, device, "device", progress=False, flip=flip)
    assert got["global"].shape == (7, 32) and got["parts"].shape == (7, 4, 8)
    # cuDNN may run float32 convolutions in TF32 on recent GPUs (torch's default): ~1e-3 apart
    atol = 1e-4 if device.type == "cpu" else 3e-3
    np.testing.assert_allclose(got["global"], want["global"], atol=atol)
    np.testing.assert_allclose(got["parts"], want["parts"], atol=atol)
    np.testing.assert_allclose(np.linalg.norm(got["global"], axis=1), np.ones(7), atol=1e-5)
