"""Training: data, model, factor application, loop, evaluation, in that order.

`train_run` trains one config on one dataset with one seed and returns its record.
`train_job` trains a Snakemake job's runs (all seeds of a few configs on one dataset),
writing each finished run at once to results/runs/{dataset}/{config}/{seed}.json and
reusing a stored run whose key (everything that determines it) is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from whatmatters import data as datasets
from whatmatters.factors import FACTORS
from whatmatters.io import provenance, write_json

STREAMS = ("init", "order", "augment", "dropout")


def seed_streams(seed: int) -> dict[str, int]:
    """Independent seeds for weight init, data order, augmentation and dropout, derived from
    the run's seed alone, so two configs with the same seed share data order (common random
    numbers) and each source of variance can be varied on its own."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: int(c.generate_state(1, np.uint64)[0] >> 1) for name, c in zip(STREAMS, children)}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


ECE_BINS = 15   # equal-width confidence bins of the expected calibration error (Guo et al. 2017)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2048) -> dict:
    """Score `model` on x (N, ...) with labels y (N,).

    Returns {correct, loss (mean cross-entropy), ece, nonfinite (examples whose outputs
    were not finite)}: ece is the expected calibration
    error, sum over ECE_BINS equal-width bins of max-probability confidence of
    |accuracy - mean confidence| x fraction of examples in the bin. Outputs that are not
    finite (a diverged network) are scored as a uniform guess: chance accuracy,
    cross-entropy log(classes), so a failed run is a measured result, not a hole.
    """
    model.eval()
    correct, loss, nonfinite = 0, 0.0, 0
    bins = torch.zeros(2, ECE_BINS, dtype=torch.float64, device=x.device)   # per bin: hits, sum of confidence
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch]).float()
        finite = torch.isfinite(logits).all(-1, keepdim=True)
        nonfinite += int((~finite).sum())
        logits = torch.where(finite, logits, torch.zeros_like(logits))
        target = y[i:i + batch]
        confidence, predicted = logits.softmax(-1).max(-1)
        hit = predicted == target
        correct += int(hit.sum())
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
        which = (confidence * ECE_BINS).long().clamp(max=ECE_BINS - 1)
        bins.index_add_(1, which, torch.stack([hit, confidence]).double())
    hits, conf = bins
    ece = float((hits - conf).abs().sum() / len(x))   # sum_b n_b/N |acc_b - conf_b|
    return {"correct": correct, "loss": loss / len(x), "ece": ece, "nonfinite": nonfinite}


def train_run(data: dict, levels: dict[str, dict], seed: int, epochs: int) -> dict:
    """Train one config (levels: factor -> {name, kind, settings}) for `epochs` on `data`
    (a prepared dataset, tensors already on the training device). Returns the run's
    measured outcomes; a loss that turns NaN/inf stops training and is recorded as
    status 'diverged' with whatever accuracy the network then has."""
    start = time.perf_counter()
    streams = seed_streams(seed)
    x_train, y_train = data["x_train"], data["y_train"]
    device = x_train.device
    build = {f: (lambda f: lambda *args: FACTORS[f].build(levels[f]["kind"], levels[f]["settings"], *args))(f)
             for f in FACTORS}

    # Model: architecture with the regularizer's dropout, then the init scheme.
    reg = build["regularization"]()
    torch.manual_seed(streams["init"])  # layers' default init draws from the global RNG
    model = build["architecture"](data["input_shape"], data["num_classes"], reg.dropout)
    build["init"](model, torch.Generator().manual_seed(streams["init"]))
    model.to(device)

    # Training strategy: optimizer (with the regularizer's weight decay), batch size, schedule.
    optimizer = build["optimizer"](model.parameters(), reg.weight_decay)
    batch_size = levels["schedule"]["settings"]["batch_size"]
    n = len(x_train)
    steps_per_epoch = max(1, n // batch_size)  # drop the ragged last batch (batch norm needs >1)
    total_steps = epochs * steps_per_epoch
    scheduler = build["schedule"](optimizer, total_steps)
    loss_fn, augment = build["loss"](), build["augmentation"]()

    order = torch.Generator().manual_seed(streams["order"])
    aug_generator = torch.Generator(device=device).manual_seed(streams["augment"])
    torch.manual_seed(streams["dropout"])  # dropout masks come from the global RNG
    targets = F.one_hot(y_train, data["num_classes"]).float()  # (N, C)

    status, diverged_at, step = "ok", None, 0
    epoch_loss = torch.zeros((), device=device)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order).to(device)
        epoch_loss.zero_()
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            xb, yb = augment(x_train[idx], targets[idx], aug_generator)
            loss = loss_fn(model(xb), yb)
            if not torch.isfinite(loss):
                status, diverged_at = "diverged", step
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            epoch_loss += loss.detach()
            step += 1
        if status == "diverged":
            break

    # Evaluation on the full train, test and shifted-test sets, no augmentation, eval mode.
    train = evaluate(model, x_train, y_train)
    test = evaluate(model, data["x_test"], data["y_test"])
    if status == "ok" and (train["nonfinite"] or test["nonfinite"] or not math.isfinite(test["loss"])):
        status, diverged_at = "diverged", step  # the last update blew up
    n_test = len(data["y_test"])
    shifted = {}
    if "x_shift" in data:
        s = evaluate(model, data["x_shift"], data["y_shift"])
        shifted = {"shifted_accuracy": s["correct"] / len(data["y_shift"]), "n_shift": len(data["y_shift"]),
                   "n_shift_correct": s["correct"]}
    return {
        "status": status,
        "test_accuracy": test["correct"] / n_test,
        "test_loss": test["loss"],
        "n_test": n_test,
        "n_test_correct": test["correct"],
        "ece": test["ece"],
        "train_accuracy": train["correct"] / n,
        "train_loss": train["loss"],
        "n_train": n,
        "n_train_correct": train["correct"],
        **shifted,
        # the optimised objective (whatever the loss factor is), mean over the last epoch
        "train_objective": float(epoch_loss) / steps_per_epoch if status == "ok" else float("nan"),
        "steps": step,
        "total_steps": total_steps,
        "diverged_at_step": diverged_at,
        "train_seconds": time.perf_counter() - start,
        "streams": streams,
    }


def code_fingerprint() -> str:
    """Hash of the source that determines a run's result (training, data, factors)."""
    here = Path(__file__).parent
    files = [here / "train.py", here / "data.py", *sorted((here / "factors").glob("*.py"))]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def run_key(dataset: dict, levels: dict, seed: int, fingerprint: str) -> str:
    """What determines a run's result; a stored run is reused only if its key matches."""
    payload = {"dataset": dataset, "levels": levels, "seed": seed, "code": fingerprint}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _stored(path: Path, key: str) -> dict | None:
    """The stored record at `path` if it is complete and made with `key`, else None."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("key") == key else None


def train_job(spec: dict, data_path: str, run_dir: str, out_path: str, threads: int = 1,
              process_started: float | None = None) -> dict:
    """Train (or reuse) every run of a job and write the job's manifest to `out_path`.

    spec: {dataset: {name, kind, settings, budget}, configs: [{config_id, levels}],
           seeds: [int], execution: {device, ...}} (see design.job_spec).
    """
    job_start = time.time()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = resolve_device(spec["execution"]["device"])
    data = datasets.load(data_path)
    for k, v in data.items():     # every split, the shifted test set too: once per job,
        if torch.is_tensor(v):    # batches are indexed on the device
            data[k] = v.to(device)
    dataset, epochs = spec["dataset"], spec["dataset"]["budget"]["epochs"]
    fingerprint = code_fingerprint()
    base = provenance(device=str(device), threads=threads, code_fingerprint=fingerprint)
    ready = time.time()

    records, trained, train_seconds = [], 0, 0.0
    for config in spec["configs"]:
        for seed in spec["seeds"]:
            path = Path(run_dir) / config["config_id"] / f"{seed}.json"
            key = run_key(dataset, config["levels"], seed, fingerprint)
            record = _stored(path, key)
            if record is None:
                record = {
                    "run_id": f"{dataset['name']}-{config['config_id']}-{seed}",
                    "dataset": dataset["name"], "config_id": config["config_id"], "seed": seed,
                    "levels": {f: lv["name"] for f, lv in config["levels"].items()},
                    **train_run(data, config["levels"], seed, epochs),
                    "key": key,
                    "settings": {"dataset": dataset, "levels": config["levels"]},
                    "provenance": base,
                }
                write_json(path, record)
                trained += 1
                train_seconds += record["train_seconds"]
            records.append(record)

    manifest = {
        "dataset": dataset["name"],
        "runs": records,
        "trained": trained,
        "reused": len(records) - trained,
        "timing": {
            # process start -> job start: interpreter and imports; job start -> ready: data load
            "startup_seconds": None if process_started is None else job_start - process_started,
            "load_seconds": ready - job_start,
            "train_seconds": train_seconds,  # runs trained by this job (reused ones cost nothing)
        },
        "provenance": base,
    }
    write_json(out_path, manifest)
    return manifest
