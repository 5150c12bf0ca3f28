"""Dataset readers, the Dataset and transforms, on trees the tests build, and the real samples."""

import pytest
import torch
from torchvision import transforms as T

from reidlib.config import DataConfig
from reidlib.data import (
    ReidDataset,
    build_transforms,
    format_summary,
    read_cuhk03,
    read_dataset,
    read_dukemtmc,
    read_market_layout,
    read_msmt17,
    summarize,
)
from reidlib.errors import DataError
from tests.helpers import MARKET, write_jpeg, write_tree

SIZE = DataConfig(height=64, width=32)  # the test transforms' input size


def test_market_layout(tmp_path):
    data = read_market_layout(write_tree(tmp_path, MARKET))
    assert [(r.pid, r.camid) for r in data.train] == [(2, 0), (2, 1), (7, 2)]  # junk dropped
    assert [(r.pid, r.camid) for r in data.query] == [(10, 0), (11, 5)]
    assert sorted(r.pid for r in data.gallery) == [0, 10, 11]  # distractor kept, junk dropped
    assert all(r.path.startswith(str(tmp_path)) for r in data.train)
    assert data.num_train_pids == 2 and data.num_cameras == 4  # c1, c2, c3, c6
    rows = {r["split"]: r for r in summarize(data)}
    assert rows["train"] == {"split": "train", "ids": 2, "images": 3, "cameras": 3}
    text = format_summary(data)
    assert "train" in text and "1 distractor" in text


def test_distractors_never_in_query(tmp_path):
    tree = {k: list(v) for k, v in MARKET.items()}
    tree["query"].append("0000_c2s1_000300_00.jpg")
    assert all(r.pid != 0 for r in read_market_layout(write_tree(tmp_path, tree)).query)


def test_dukemtmc(tmp_path):
    tree = {
        "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg"],
        "query": ["0005_c2_f0046985.jpg"],
        "bounding_box_test": ["0005_c5_f0051781.jpg", "0006_c8_f0000001.jpg"],
    }
    write_tree(tmp_path, tree)
    data = read_dataset(tmp_path)
    assert data.name == "dukemtmc"
    assert [(r.pid, r.camid) for r in data.train] == [(1, 1), (1, 4)]
    assert read_dukemtmc(tmp_path).gallery[1].camid == 7


def test_cuhk03(tmp_path):
    tree = {
        "detected/bounding_box_train": ["0001_c1_01.png", "0001_c2_06.png"],
        "detected/query": ["0003_c1_01.png"],
        "detected/bounding_box_test": ["0003_c2_07.png"],
    }
    for folder, files in tree.items():
        for name in files:
            write_jpeg(tmp_path / folder / name)
    data = read_dataset(tmp_path)
    assert data.name == "cuhk03-detected"
    assert [(r.pid, r.camid) for r in data.train] == [(1, 0), (1, 1)]
    with pytest.raises(DataError, match="labeled"):
        read_cuhk03(tmp_path, variant="labeled")


def test_msmt17(tmp_path):
    names = {
        "train": ["0000/0000_000_01_0303morning_0015_0.jpg", "0000/0000_001_05_0303morning_0016_0.jpg"],
        "test": ["0001/0001_000_03_0303noon_0001_0.jpg", "0001/0001_001_07_0303noon_0002_0.jpg"],
    }
    for folder, files in names.items():
        for name in files:
            write_jpeg(tmp_path / folder / name)
    (tmp_path / "list_train.txt").write_text("".join(f"{n} 0\n" for n in names["train"]))
    (tmp_path / "list_query.txt").write_text(f"{names['test'][0]} 1\n")
    (tmp_path / "list_gallery.txt").write_text(f"{names['test'][1]} 1\n")
    data = read_dataset(tmp_path)
    assert data.name == "msmt17"
    assert [(r.pid, r.camid) for r in data.train] == [(0, 0), (0, 4)]
    assert data.query[0].path.endswith("test/" + names["test"][0])
    assert read_msmt17(tmp_path).gallery[0].camid == 6
    (tmp_path / "list_query.txt").write_text("broken line without label\n")
    with pytest.raises(DataError, match=r"list_query.txt:1"):
        read_msmt17(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda root: None, "dataset root not found"),
        (lambda root: write_tree(root, {"bounding_box_train": ["0001_c1s1_000001_00.jpg"]}), "missing folder"),
        (lambda root: write_tree(root, {k: ["bad-name.jpg"] for k in MARKET}), "bad-name.jpg: name does not parse"),
        (
            lambda root: (write_tree(root, MARKET), (root / "query" / "notes.csv").write_text("x")),
            "notes.csv: not an image",
        ),
        (lambda root: (write_tree(root, MARKET), [p.unlink() for p in (root / "query").iterdir()]), "no usable images"),
    ],
)
def test_errors_name_the_path(tmp_path, change, message):
    root = tmp_path / "ds"
    change(root)
    with pytest.raises(DataError, match=message):
        read_dataset(root)


def test_unknown_layout(tmp_path):
    with pytest.raises(DataError, match="unknown layout 'viper'"):
        read_dataset(tmp_path, layout="viper")


def test_dataset_items_and_bad_images(tmp_path):
    data = read_market_layout(write_tree(tmp_path, MARKET))
    ds = ReidDataset(data.train, build_transforms(DataConfig(height=32, width=16), train=False))
    item = ds[1]
    assert set(item) == {"img", "pid", "camid", "index", "path"}
    assert item["img"].shape == (3, 32, 16) and item["index"] == 1 and item["pid"] == 2
    empty = tmp_path / "query" / "0010_c1s1_001000_00.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"0010_c1s1_001000_00.jpg: empty image file \(0 bytes\)"):
        ReidDataset(data.query)[0]
    corrupt = tmp_path / "query" / "0011_c6s1_002000_00.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(DataError, match="0011_c6s1_002000_00.jpg"):
        ReidDataset(data.query)[1]


def test_transforms():
    from PIL import Image

    img = Image.new("RGB", (50, 100), (200, 10, 10))
    train = build_transforms(DataConfig(height=64, width=32, random_erasing=1.0), train=True)
    test = build_transforms(SIZE, train=False)
    torch.manual_seed(0)
    assert train(img).shape == test(img).shape == (3, 64, 32)
    assert (train(img) == 0).any()  # erasing with p=1 leaves a zeroed rectangle
    plain = build_transforms(DataConfig(height=64, width=32, flip=False, pad=0, random_erasing=0.0), train=True)
    assert torch.equal(plain(img), test(img))


def test_cached_crops_match_the_file_pipeline(tmp_path):
    """load_images + from_cache transforms give the tensors the file pipeline gives."""
    from reidlib.data import ImageRecord, load_images

    path = write_jpeg(tmp_path / "a.jpg", seed=3, size=(100, 50))
    records = [ImageRecord(str(path), 1, 0)]
    images = load_images(records, 64, 32)
    assert images[str(path)].dtype == torch.uint8 and images[str(path)].shape == (3, 64, 32)
    from_file = ReidDataset(records, build_transforms(SIZE, train=False))[0]["img"]
    from_cache = ReidDataset(records, build_transforms(SIZE, train=False, from_cache=True), images)[0]["img"]
    assert torch.allclose(from_file, from_cache, atol=1e-6)
    aug = DataConfig(height=64, width=32, flip=True, pad=4, random_erasing=0.5)
    torch.manual_seed(1)
    a = build_transforms(aug, train=True, from_cache=True)(images[str(path)])
    torch.manual_seed(1)
    b = build_transforms(aug, train=True)(T.functional.to_pil_image(images[str(path)]))
    assert torch.allclose(a, b, atol=1e-6)  # the same augmentations, on the tensor


def test_load_images_names_a_bad_file(tmp_path):
    from reidlib.data import ImageRecord, load_images

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="bad.jpg"):
        load_images([ImageRecord(str(bad), 1, 0)], 64, 32)


def test_real_market_sample(shared_data):
    data = read_market_layout(shared_data / "mini_market1501")
    for split in (data.train, data.query, data.gallery):
        assert len(split) == 32 and len({r.pid for r in split}) == 16
    assert {r.camid for r in data.train + data.query + data.gallery} == set(range(6))
    assert ReidDataset(data.query, build_transforms(SIZE, train=False))[0]["img"].shape == (3, 64, 32)


def test_real_pku_reid(shared_data):
    data = read_dataset(shared_data / "pku_reid")
    rows = {r["split"]: r for r in summarize(data)}
    assert (rows["train"]["ids"], rows["train"]["images"]) == (62, 992)
    assert (rows["query"]["ids"], rows["query"]["images"], rows["query"]["cameras"]) == (12, 96, 1)
    assert (rows["gallery"]["ids"], rows["gallery"]["images"], rows["gallery"]["cameras"]) == (12, 96, 1)
    assert {r.camid for r in data.query}.isdisjoint({r.camid for r in data.gallery})
