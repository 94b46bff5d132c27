"""Small builders shared by tests: tiny datasets and configs with resolved levels."""

import torch

from whatmatters.factors import FACTORS


def level(factor, kind, name=None, **settings):
    return {"name": name or kind, "kind": kind, "settings": FACTORS[factor].resolve(factor, kind, settings)}


def cheap_levels(**overrides):
    """A config that trains in well under a second on tiny data."""
    levels = {
        "init": level("init", "he"),
        "optimizer": level("optimizer", "adam", lr=0.01),
        "architecture": level("architecture", "mlp", width=16, depth=1),
        "loss": level("loss", "cross_entropy"),
        "augmentation": level("augmentation", "none"),
        "schedule": level("schedule", "constant", batch_size=32),
        "regularization": level("regularization", "none"),
    }
    return {**levels, **overrides}


def tiny_data(n=256, classes=4, shape=(1, 12), seed=0):
    """Linearly separable-ish synthetic classification data in the Prepared format."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    centers = torch.randn(classes, *shape, generator=g) * 2
    x = centers[y] + torch.randn(n, *shape, generator=g)
    split = 3 * n // 4
    shifted = x[split:] + 1.5 * torch.randn(n - split, *shape, generator=g)   # a noisier test set
    return {"x_train": x[:split], "y_train": y[:split], "x_test": x[split:], "y_test": y[split:],
            "x_shift": shifted, "y_shift": y[split:], "num_classes": classes, "input_shape": shape}


def write_prepared(data, path):
    """Write tiny_data() where a training job reads a prepared dataset (whatmatters.data.load)."""
    import json

    payload = {k: v for k, v in data.items() if torch.is_tensor(v)}
    payload["meta"] = json.dumps({"spec": {"name": "tiny"}, "input_shape": list(data["input_shape"]),
                                  "num_classes": data["num_classes"]})
    torch.save(payload, path)


def mutate(config, path, value):
    """A copy of config with the value at `path` (keys and indices) replaced, deleted
    (value ...) or, for a missing key of a mapping, added."""
    import copy

    config = copy.deepcopy(config)
    *parents, last = path
    node = config
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return config
