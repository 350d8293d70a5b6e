"""Tests for nas.training.data: embedded datasets, CIFAR binary/python formats, ImageFolder, errors, cache.

CIFAR and ImageFolder fixtures are tiny files generated in tmp_path; nothing is downloaded.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.spec.errors import ConfigError, DataError
from nas.training import data
from nas.training.data import DATASETS, clear_cache, dataset_names, load_dataset

# --- helpers -------------------------------------------------------------------------------------


def _cifar_images(n: int, offset: int = 0) -> np.ndarray:
    """(n, 3, 32, 32) uint8 images: each plane a distinct per-image value plus one marker pixel
    per plane, so a wrong channel order or an HWC/CHW mix-up changes the values."""
    images = np.zeros((n, 3, 32, 32), dtype=np.uint8)
    for i in range(n):
        images[i, 0] = 10 + i + offset  # R plane
        images[i, 1] = 100 + i + offset  # G plane
        images[i, 2] = 200 + i + offset  # B plane
    images[:, 0, 0, 1] = 7
    images[:, 1, 2, 3] = 77
    images[:, 2, 4, 5] = 177
    return images


def _write_cifar10_bin(folder: Path, per_batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True)
    all_images, all_labels = [], []
    for b in range(1, 6):
        images = _cifar_images(per_batch, offset=b)
        labels = (np.arange(per_batch) + b) % 10
        records = np.concatenate([labels[:, None].astype(np.uint8), images.reshape(per_batch, -1)], axis=1)
        records.tofile(folder / f"data_batch_{b}.bin")
        all_images.append(images)
        all_labels.append(labels)
    return np.concatenate(all_images), np.concatenate(all_labels)


def _raw_pixels(spec: str) -> tuple[np.ndarray, np.ndarray]:
    """Every sample in file order before normalisation, as uint8 (the loaders scale by 1/255)."""
    source = data._open_source(data._canonical_spec(spec), 32)
    x = source.fetch(np.arange(len(source.labels)))
    return (x * 255).round().to(torch.uint8).numpy(), source.labels


def _check_cifar(spec: str, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    raw, raw_labels = _raw_pixels(spec)
    np.testing.assert_array_equal(raw, images)
    np.testing.assert_array_equal(raw_labels, labels)
    ds = load_dataset(spec, resolution=32, val_fraction=0.25)
    assert (ds.num_classes, ds.in_channels, ds.resolution) == (num_classes, 3, 32)
    x = torch.cat([ds.train_x, ds.val_x])
    assert x.shape == (len(labels), 3, 32, 32)
    assert sorted(torch.cat([ds.train_y, ds.val_y]).tolist()) == sorted(labels.tolist())
    # normalisation is a per-channel increasing affine map, so each marker stays its plane's minimum
    assert torch.all(x[:, 0, 0, 1] == x[:, 0].amin(dim=(1, 2)))
    assert torch.all(x[:, 1, 2, 3] == x[:, 1].amin(dim=(1, 2)))


def _write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (20, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


@pytest.fixture(autouse=True)
def _fresh_cache():
    # tmp_path fixtures reuse no paths, but a clean cache keeps each test independent anyway.
    clear_cache()
    yield
    clear_cache()


# --- registry ------------------------------------------------------------------------------------


def test_dataset_names_match_help() -> None:
    assert dataset_names() == list(DATASETS)
    assert dataset_names()[0] == "mnist5k"
    assert set(dataset_names()) == {
        "mnist5k",
        "digits",
        "cifar10:DIR",
        "cifar100:DIR",
        "imagefolder:DIR",
        "synthetic",
    }


# --- mnist5k / digits ----------------------------------------------------------------------------


def test_mnist5k_shapes_and_normalisation() -> None:
    ds = load_dataset("mnist5k", resolution=28)
    assert (ds.num_classes, ds.in_channels, ds.resolution) == (10, 1, 28)
    assert ds.train_x.shape == (4000, 1, 28, 28) and ds.val_x.shape == (1000, 1, 28, 28)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert ds.train_x.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert ds.train_x.std().item() == pytest.approx(1.0, abs=1e-3)
    # val uses the train statistics, so it is close to but not exactly standardised
    assert abs(ds.val_x.mean().item()) < 0.1
    assert set(ds.train_y.tolist()) == set(range(10))
    assert "mnist5k" in ds.describe() and "4000 train / 1000 val" in ds.describe()
    assert "10 classes" in ds.describe() and "1x28x28" in ds.describe()


def test_mnist5k_resize_to_16() -> None:
    ds = load_dataset("mnist5k", resolution=16)
    assert ds.train_x.shape[1:] == (1, 16, 16) and ds.val_x.shape[1:] == (1, 16, 16)
    assert torch.isfinite(ds.train_x).all()


def test_split_is_stratified() -> None:
    ds = load_dataset("mnist5k", resolution=8, val_fraction=0.3, seed=3)
    train_counts = torch.bincount(ds.train_y, minlength=10)
    val_counts = torch.bincount(ds.val_y, minlength=10)
    share = val_counts.float() / (train_counts + val_counts).float()
    # the file holds 500 per class, sorted by class: a head/tail split would put whole classes in val
    assert torch.all((share - 0.3).abs() <= 0.01), share


def test_split_deterministic_per_seed_and_varies_across_seeds() -> None:
    a = load_dataset("mnist5k", resolution=8, seed=0)
    clear_cache()
    b = load_dataset("mnist5k", resolution=8, seed=0)
    assert a is not b
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    c = load_dataset("mnist5k", resolution=8, seed=1)
    assert not torch.equal(a.val_x, c.val_x)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


def test_a_held_out_test_split_is_disjoint_and_the_same_for_every_seed() -> None:
    splits = [load_dataset("mnist5k", resolution=28, seed=seed, test_fraction=0.2) for seed in (0, 1)]
    for ds in splits:
        assert (len(ds.train_y), len(ds.val_y), len(ds.test_y)) == (3200, 800, 1000)
        assert torch.bincount(ds.test_y, minlength=10).tolist() == [100] * 10  # stratified
        seen = _rows(ds.train_x) | _rows(ds.val_x)
        assert len(seen) == 4000 and not seen & _rows(ds.test_x)  # no test image is trained or validated on
        assert "1000 test held out" in ds.describe()
    a, b = splits
    assert torch.equal(a.test_y, b.test_y)
    # the same images, each normalised with its own seed's train statistics: equal once standardised
    def standard(x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean()) / x.std()

    assert torch.allclose(standard(a.test_x), standard(b.test_x), atol=1e-5)
    assert not torch.equal(a.val_y, b.val_y)  # while train and val still move with the seed
    # evaluating on the test split: val's place, nothing else changed
    final = a.test_as_val()
    assert final.val_x is a.test_x and final.train_x is a.train_x
    with pytest.raises(ConfigError, match="without a test split"):
        load_dataset("mnist5k", resolution=28).test_as_val()


def test_limit_keeps_stratified_subset() -> None:
    ds = load_dataset("mnist5k", resolution=8, limit=200, val_fraction=0.2)
    assert len(ds.train_y) + len(ds.val_y) == 200
    assert len(ds.val_y) == 40
    assert torch.bincount(torch.cat([ds.train_y, ds.val_y]), minlength=10).tolist() == [20] * 10
    assert torch.bincount(ds.val_y, minlength=10).tolist() == [4] * 10


def test_digits_loads() -> None:
    ds = load_dataset("digits", resolution=8)
    assert (ds.num_classes, ds.in_channels) == (10, 1)
    assert len(ds.train_y) + len(ds.val_y) == 1797
    assert ds.train_x.shape[1:] == (1, 8, 8)
    up = load_dataset("digits", resolution=16, limit=100)
    assert up.train_x.shape[1:] == (1, 16, 16)


def test_synthetic_is_deterministic_and_learnable() -> None:
    ds = load_dataset("synthetic", resolution=16)
    assert (ds.num_classes, ds.in_channels) == (10, 3)
    again = load_dataset("synthetic", resolution=16, val_fraction=0.2000001)  # bypasses the cache
    assert torch.equal(ds.train_x, again.train_x)
    # nearest class mean on the train split must classify val far above chance (0.1)
    flat_train, flat_val = ds.train_x.flatten(1), ds.val_x.flatten(1)
    centroids = torch.stack([flat_train[ds.train_y == c].mean(0) for c in range(10)])
    pred = torch.cdist(flat_val, centroids).argmin(1)
    assert (pred == ds.val_y).float().mean().item() > 0.8


# --- CIFAR ---------------------------------------------------------------------------------------


def test_cifar10_binary_round_trip(tmp_path: Path) -> None:
    images, labels = _write_cifar10_bin(tmp_path / "cifar-10-batches-bin")
    _check_cifar(f"cifar10:{tmp_path}", images, labels, 10)  # parent of the standard subfolder
    # the data directory itself works too, and a resize keeps 3 channels
    small = load_dataset(f"cifar10:{tmp_path / 'cifar-10-batches-bin'}", resolution=16)
    assert small.train_x.shape[1:] == (3, 16, 16)


def test_cifar100_binary_uses_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    n = 10
    images = _cifar_images(n)
    coarse = np.arange(n) % 20
    fine = 90 + np.arange(n) % 10  # fine labels >= 20 cannot be mistaken for coarse ones
    columns = [coarse[:, None].astype(np.uint8), fine[:, None].astype(np.uint8), images.reshape(n, -1)]
    np.concatenate(columns, axis=1).tofile(folder / "train.bin")
    _check_cifar(f"cifar100:{tmp_path}", images, fine, 100)


def _write_cifar10_py(folder: Path, *, bytes_keys: bool, protocol: int) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True)
    all_images, all_labels = [], []
    for b in range(1, 6):
        images = _cifar_images(3, offset=b)
        all_images.append(images)
        labels = [int(v) for v in (np.arange(3) + 2 * b) % 10]
        all_labels.extend(labels)
        batch = {"data": images.reshape(3, -1), "labels": labels, "batch_label": "training batch"}
        if bytes_keys:  # like the official Python 2 files, read back as bytes keys
            batch = {k.encode(): v for k, v in batch.items()}
        with open(folder / f"data_batch_{b}", "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
    return np.concatenate(all_images), np.array(all_labels)


@pytest.mark.parametrize(("bytes_keys", "protocol"), [(True, 2), (False, pickle.HIGHEST_PROTOCOL)])
def test_cifar10_python_format(tmp_path: Path, bytes_keys: bool, protocol: int) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    images, labels = _write_cifar10_py(folder, bytes_keys=bytes_keys, protocol=protocol)
    _check_cifar(f"cifar10:{tmp_path}", images, labels, 10)


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes the way Python 2 wrote str, and numpy's pickling helpers under numpy 1's
    module names, to imitate the official cifar-10-batches-py files (read with encoding='bytes')."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def test_cifar10_python2_style_pickle(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for b in range(1, 6):
        batch = {"batch_label": "batch", "labels": [b, b], "data": _cifar_images(2, b).reshape(2, -1)}
        with open(folder / f"data_batch_{b}", "wb") as f:
            _Py2Pickler(f, protocol=2).dump(batch)
    assert b"numpy.core.multiarray\n_reconstruct" in (folder / "data_batch_1").read_bytes()
    images = np.concatenate([_cifar_images(2, b) for b in range(1, 6)])
    _check_cifar(f"cifar10:{folder}", images, np.repeat(np.arange(1, 6), 2), 10)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_cifar_python_refuses_malicious_pickle(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    for b in range(1, 6):
        with open(folder / f"data_batch_{b}", "wb") as f:
            pickle.dump({b"data": _Evil(marker), b"labels": [0]}, f, protocol=2)
    assert b"system" in (folder / "data_batch_1").read_bytes()  # a plain pickle.load would run it
    with pytest.raises(DataError, match="refusing") as info:
        load_dataset(f"cifar10:{tmp_path}", resolution=32)
    assert "data_batch_1" in str(info.value) and "system" in str(info.value)
    assert not marker.exists()


def test_cifar_binary_truncated(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    _write_cifar10_bin(folder)
    path = folder / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="3073") as info:
        load_dataset(f"cifar10:{tmp_path}", resolution=32)
    assert str(path) in str(info.value)


def test_cifar_missing_dir_and_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as info:
        load_dataset(f"cifar10:{missing}", resolution=32)
    assert str(missing) in str(info.value)
    with pytest.raises(DataError, match="data_batch_1.bin") as info:
        load_dataset(f"cifar10:{tmp_path}", resolution=32)
    assert str(tmp_path) in str(info.value)
    folder = tmp_path / "cifar-10-batches-bin"
    _write_cifar10_bin(folder)
    (folder / "data_batch_4.bin").unlink()
    with pytest.raises(DataError, match="missing data_batch_4.bin"):
        load_dataset(f"cifar10:{tmp_path}", resolution=32)
    with pytest.raises(DataError, match="train.bin"):
        load_dataset(f"cifar100:{tmp_path}", resolution=32)


# --- ImageFolder ---------------------------------------------------------------------------------


def test_imagefolder_two_classes(tmp_path: Path) -> None:
    for i in range(6):
        _write_png(tmp_path / "cat" / f"{i}.png", (200, 30, 30 + i))
        _write_png(tmp_path / "dog" / f"{i}.PNG", (30, 30 + i, 200), size=(9, 15))
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = load_dataset(f"imagefolder:{tmp_path}", resolution=8, val_fraction=0.5)
    assert (ds.num_classes, ds.in_channels, ds.resolution) == (2, 3, 8)
    assert len(ds.train_y) == 6 and len(ds.val_y) == 6
    assert torch.bincount(ds.val_y).tolist() == [3, 3]
    x, y = torch.cat([ds.train_x, ds.val_x]), torch.cat([ds.train_y, ds.val_y])
    # class 0 ("cat", sorted first) is red-dominant, class 1 blue-dominant
    assert torch.all(x[y == 0][:, 0] > x[y == 0][:, 2])
    assert torch.all(x[y == 1][:, 2] > x[y == 1][:, 0])


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="0 class subdirectories") as info:
        load_dataset(f"imagefolder:{tmp_path}", resolution=8)
    assert str(tmp_path) in str(info.value)
    _write_png(tmp_path / "only" / "a.png", (1, 2, 3))
    with pytest.raises(DataError, match="at least 2"):
        load_dataset(f"imagefolder:{tmp_path}", resolution=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images") as info:
        load_dataset(f"imagefolder:{tmp_path}", resolution=8)
    assert str(tmp_path / "empty") in str(info.value)
    bad = tmp_path / "empty" / "broken.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    with pytest.raises(DataError, match="cannot read image") as info:
        load_dataset(f"imagefolder:{tmp_path}", resolution=8)
    assert str(bad) in str(info.value)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}", resolution=8)


# --- spec and argument errors --------------------------------------------------------------------


def test_bad_specs_and_arguments() -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset("imagenet", resolution=8)
    assert str(info.value) == (
        "unknown dataset 'imagenet'; allowed: mnist5k, digits, cifar10:DIR, cifar100:DIR, "
        "imagefolder:DIR, synthetic"
    )
    for spec in ("cifar10", "cifar10:", "cifar100", "imagefolder: "):
        with pytest.raises(ConfigError, match="needs a directory"):
            load_dataset(spec, resolution=8)
    with pytest.raises(ConfigError, match="no ':' argument"):
        load_dataset("mnist5k:/tmp", resolution=8)
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="val_fraction"):
            load_dataset("synthetic", resolution=8, val_fraction=fraction)
    with pytest.raises(ConfigError, match="resolution"):
        load_dataset("synthetic", resolution=0)
    with pytest.raises(ConfigError, match="limit"):
        load_dataset("synthetic", resolution=8, limit=1)
    for fraction in (-0.1, 1.0, 0.8):  # 0.8 leaves no room beside val 0.2
        with pytest.raises(ConfigError, match="test_fraction"):
            load_dataset("synthetic", resolution=8, test_fraction=fraction)


# --- cache ---------------------------------------------------------------------------------------


def test_cache_returns_same_object(tmp_path: Path) -> None:
    a = load_dataset("synthetic", resolution=8, seed=2)
    assert load_dataset("synthetic", resolution=8, seed=2) is a
    assert load_dataset("synthetic", resolution=8, seed=3) is not a
    assert load_dataset("synthetic", resolution=12, seed=2) is not a
    # equal directories spelled differently share one entry
    _write_cifar10_bin(tmp_path / "cifar-10-batches-bin", per_batch=2)
    b = load_dataset(f"cifar10:{tmp_path}", resolution=8)
    assert load_dataset(f"cifar10:{tmp_path}/./", resolution=8) is b
