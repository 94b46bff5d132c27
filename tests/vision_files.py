"""Writers of tiny dataset files in each torchvision dataset's real on-disk format.

Each writer puts random uint8 images and cycling labels where torchvision looks for them
under `root`, and returns what a reader should get back: {split: (x (N, C, H, W) uint8,
y (N,) int64 class indices)}, split in ("train", "test").
"""

import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX (LeCun's MNIST format): magic 0x0000 0x08 (uint8) ndim, each size as a big-endian
    uint32, then the bytes in C order."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _images(rng, n: int, shape=(3, 32, 32)) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict:
    """<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (folder: MNIST or
    FashionMNIST), the files torchvision gunzips from the official .gz archives."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng, out = np.random.default_rng(seed), {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x, y = _images(rng, n, (28, 28)), np.arange(n) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        out[split] = (x[:, None], y)
    return out


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the archives were written by Python 2's cPickle


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict:
    """<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: pickled dicts
    with 'data' (N, 3072) uint8 rows (1024 red, then green, then blue values, row-major) and
    'labels' lists, as in cifar-10-python.tar.gz."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng, xs, ys = np.random.default_rng(seed), {"train": [], "test": []}, {"train": [], "test": []}
    batches = [(f"data_batch_{i}", "train", per_batch) for i in range(1, 6)] + [("test_batch", "test", n_test)]
    for name, split, n in batches:
        x, y = _images(rng, n), rng.integers(0, 10, size=n)
        _pickle(folder / name, {"batch_label": name, "labels": y.tolist(), "data": x.reshape(n, 3072),
                                "filenames": [f"{name}_{i}.png" for i in range(n)]})
        xs[split].append(x)
        ys[split].append(y)
    _pickle(folder / "batches.meta", {"num_cases_per_batch": per_batch, "num_vis": 3072,
                                      "label_names": [f"class{i}" for i in range(10)]})
    return {s: (np.concatenate(xs[s]), np.concatenate(ys[s])) for s in xs}


def write_cifar100(root: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict:
    """<root>/cifar-100-python/{train, test, meta}: like CIFAR-10's batches with 'fine_labels'
    (0..99) and 'coarse_labels' (0..19), as in cifar-100-python.tar.gz."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng, out = np.random.default_rng(seed), {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = _images(rng, n), rng.integers(0, 100, size=n)
        _pickle(folder / split, {"filenames": [f"{split}_{i}.png" for i in range(n)], "batch_label": split,
                                 "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(),
                                 "data": x.reshape(n, 3072)})
        out[split] = (x, y)
    _pickle(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                              "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return out


def write_svhn(root: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict:
    """<root>/{train,test}_32x32.mat (MATLAB, scipy.io.savemat): 'X' (32, 32, 3, N) uint8 and
    'y' (N, 1) labels 1..10, where 10 means the digit 0."""
    from scipy.io import savemat

    Path(root).mkdir(parents=True, exist_ok=True)
    rng, out = np.random.default_rng(seed), {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, digit = _images(rng, n), np.arange(n) % 10
        label = np.where(digit == 0, 10, digit).astype(np.uint8)[:, None]
        savemat(Path(root) / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": label})
        out[split] = (x, digit)
    return out
