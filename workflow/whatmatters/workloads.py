"""What a study may ask of a dataset kind, known without building it (nor importing torch).

The shift kinds that fit a dataset kind and the one it gets by default, the ranges of shift
settings that their types do not say, and each kind's split sizes, so that whatmatters.study
refuses a study that no preparation could serve before anything is built. whatmatters.data
builds the datasets and shifts themselves.
"""

from __future__ import annotations

import math

from whatmatters.catalog import SHIFTS

# Ranges that a setting's type does not say; whatmatters.study checks them when the study loads.
SHIFT_RANGES = {
    "noise": {"std": (lambda v: v > 0, "a number > 0")},
    "contrast": {"factor": (lambda v: v >= 0, "a number >= 0")},
    "blur": {"kernel_size": (lambda v: v >= 3 and v % 2 == 1, "an odd integer >= 3"),
             "sigma": (lambda v: v > 0, "a number > 0")},
    "mnist1d": {"max_translation": (lambda v: v >= 1, "an integer >= 1"),
                **{k: (lambda v: v >= 0, "a number >= 0")
                   for k in ("scale_coeff", "corr_noise_scale", "iid_noise_scale", "shear_scale")}},
}
IMAGE_SHIFTS = ("rotation", "noise", "contrast", "blur", "none")
SHIFTS_FOR = {"mnist1d": ("mnist1d", "noise", "none")}  # dataset kinds whose inputs are not images


def shift_kinds(dataset_kind: str) -> tuple[str, ...]:
    """The shift kinds that fit a dataset kind, its default first."""
    return SHIFTS_FOR.get(dataset_kind, IMAGE_SHIFTS)


def default_shift(dataset_kind: str) -> dict:
    """{kind, settings} of the shifted test set a dataset gets when its entry names none."""
    kind = shift_kinds(dataset_kind)[0]
    return {"kind": kind, "settings": SHIFTS.resolve(f"default shift of {dataset_kind}", kind, {})}


NO_VARIANT = {"label_noise": 0.0, "subsample": None}
FILE_KINDS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")   # read from files under their root


# Each kind's split sizes from its settings, known without building it: kind -> settings ->
# (training examples, test examples, classes). Checked when a study is loaded, so that a
# split with fewer examples than classes is refused there, not by a crash in preparation.
def _fraction_split(n: int, test_fraction: float, test_rounds_up: bool) -> tuple[int, int]:
    test = math.ceil(test_fraction * n) if test_rounds_up else n - int(n * (1 - test_fraction))
    return n - test, test


SPLIT_SIZES = {
    "mnist1d": lambda s: (*_fraction_split(s["num_samples"], s["test_fraction"], False), 10),
    "digits": lambda s: (*_fraction_split(1797, s["test_fraction"], True), 10),   # sklearn rounds the test split up
    "mnist_5k": lambda s: (*_fraction_split(5000, s["test_fraction"], True), 10),
    "mnist": lambda s: (60000, 10000, 10), "fashion_mnist": lambda s: (60000, 10000, 10),
    "cifar10": lambda s: (50000, 10000, 10), "cifar100": lambda s: (50000, 10000, 100),
    "svhn": lambda s: (73257, 26032, 10),
}


def classes(kind: str, settings: dict) -> int:
    """How many classes a dataset kind has (its chance accuracy is 1 / classes)."""
    return SPLIT_SIZES[kind](settings)[2]


def split_problem(kind: str, settings: dict, subsample: int | None) -> tuple[str, str] | None:
    """(setting, why) when a dataset's training or test split would hold fewer examples than
    it has classes, or `subsample` asks for more training examples than there are; else None."""
    n_train, n_test, n_classes = SPLIT_SIZES[kind](settings)
    key = "test_fraction" if "test_fraction" in settings else "kind"
    for split, n in (("training", n_train), ("test", n_test)):
        if n < n_classes:
            return key, (f"{settings.get(key, kind)} leaves {n} {split} examples for {n_classes} classes; "
                         "each split needs at least one example per class")
    if subsample is not None and subsample < n_classes:
        return "subsample", f"{subsample} training examples for {n_classes} classes; use at least {n_classes}"
    if subsample is not None and subsample > n_train:
        return "subsample", f"{subsample} is more than the {n_train} training examples available; use at most {n_train}"
    return None
