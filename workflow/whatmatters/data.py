"""Datasets are the workloads: each kind prepares tensors once, with a fixed seeded split.

Every dataset, 1-D or 2-D, meets one interface (a `Prepared` dict):
    x_train (N, C, *spatial) float32, standardised with training statistics
    y_train (N,) int64 class indices
    x_test, y_test likewise
    num_classes int, input_shape tuple (C, *spatial)
Prepared data is written once to results/data/{name}.pt and read with
torch.load(weights_only=True): no unpickling of arbitrary objects.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from whatmatters.errors import DataError
from whatmatters.factors.registry import Registry
from whatmatters.io import atomic_path

DATASETS = Registry("dataset")


def _standardise(x_train: np.ndarray, x_test: np.ndarray):
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, (x_test - mean) / std


def _prepared(x_train, y_train, x_test, y_test, num_classes: int) -> dict:
    x_train, x_test = _standardise(x_train.astype(np.float32), x_test.astype(np.float32))
    return {
        "x_train": torch.from_numpy(np.ascontiguousarray(x_train)),
        "y_train": torch.from_numpy(y_train.astype(np.int64)),
        "x_test": torch.from_numpy(np.ascontiguousarray(x_test)),
        "y_test": torch.from_numpy(y_test.astype(np.int64)),
        "num_classes": num_classes,
        "input_shape": tuple(x_train.shape[1:]),
    }


@DATASETS.register("mnist1d")
def mnist1d(*, num_samples: int = 5000, test_fraction: float = 0.2, seed: int = 42) -> dict:
    """MNIST-1D (Greydanus 2020): 1-D signals of length 40, 10 classes, generated from the
    templates that ship in the `mnist1d` package. Shape (N, 1, 40)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, 1 - test_fraction, seed
    d = make_dataset(args)  # seeds numpy's global RNG itself; this process makes nothing else
    return _prepared(d["x"][:, None, :], d["y"], d["x_test"][:, None, :], d["y_test"], 10)


@DATASETS.register("digits")
def digits(*, test_fraction: float = 0.25, seed: int = 0) -> dict:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), stratified seeded
    split. Shape (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        d.images[:, None], d.target, test_size=test_fraction, random_state=seed, stratify=d.target)
    return _prepared(x_train, y_train, x_test, y_test, 10)


def prepare(spec: dict, path: str | Path, provenance: dict) -> None:
    """Build dataset `spec` ({name, kind, settings}) and write its tensors to `path` atomically."""
    data = DATASETS.build(spec["kind"], spec["settings"])
    data["meta"] = json.dumps({"spec": spec, "provenance": provenance,
                               "input_shape": list(data.pop("input_shape")),
                               "num_classes": data.pop("num_classes")})
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def load(path: str | Path) -> dict:
    """Read prepared tensors (see module docstring); raises DataError naming a bad file."""
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
        meta = json.loads(data.pop("meta"))
    except FileNotFoundError:
        raise DataError(f"prepared dataset {path} does not exist; run the prepare_data rule") from None
    except Exception as e:  # any corruption: name the file rather than show a traceback
        raise DataError(f"prepared dataset {path} is unreadable ({e}); delete it and rerun") from None
    data["input_shape"] = tuple(meta["input_shape"])
    data["num_classes"] = meta["num_classes"]
    data["spec"] = meta["spec"]
    return data
