"""How much stacked seeds differ from seeds trained alone, and one CPU's kernels from another's.

Trains the runs of tests/test_batched.py's equivalence checks alone and stacked, once per
environment below (each in a fresh process: the variables act at import), and prints the
largest relative difference of a loss or ECE, healthy runs apart from the chaotic lr-10 one.
The tolerances of tests/test_batched.py come from these numbers (docs/reliability.md).

    PYTHONPATH=workflow .venv/bin/python benchmarks/stacking_rounding.py
"""

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = {  # another machine's kernels, emulated
    "this CPU": {},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "torch scalar kernels": {"ATEN_CPU_CAPABILITY": "default"},
    "SSE4 BLAS and convolutions": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "MKL compatible mode": {"OPENBLAS_CORETYPE": "Prescott", "MKL_CBWR": "COMPATIBLE"},
}
FLOATS = ("test_loss", "train_loss", "ece", "train_objective")
EXACT = ("status", "diverged_at_step", "steps", "n_test_correct", "n_train_correct", "n_shift_correct")


def runs() -> dict:
    """{scenario: {"alone": [records], "stacked": [records]}} for the test suite's scenarios."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "workflow")]
    from helpers import cheap_levels, level, tiny_data
    from test_batched import SEEDS, SMALL
    from whatmatters.factors import FACTORS
    from whatmatters.train import train_run, train_runs

    cases = {f"architecture {k}": (cheap_levels(architecture=level("architecture", k, **SMALL[k]),
                                                regularization=level("regularization", "both", p=0.2)), {}, SEEDS, 2)
             for k in FACTORS["architecture"].kinds()}
    cases |= {f"optimizer {k}": (cheap_levels(optimizer=level("optimizer", k, lr={"sgd": 0.1, "nesterov": 0.05}.get(k, 0.003)),
                                              regularization=level("regularization", "weight_decay"),
                                              schedule=level("schedule", "onecycle", batch_size=32)), {}, SEEDS, 2)
              for k in FACTORS["optimizer"].kinds()}
    cases |= {f"augmentation {k}": (cheap_levels(augmentation=level("augmentation", k)), {"shape": (1, 6, 6)}, SEEDS, 2)
              for k in FACTORS["augmentation"].kinds()}
    cases["chaotic"] = (cheap_levels(optimizer=level("optimizer", "sgd", lr=10.0),
                                     regularization=level("regularization", "dropout", p=0.2)), {}, list(range(6)), 3)
    keep = lambda r: {k: r[k] for k in FLOATS + EXACT}  # noqa: E731
    out = {}
    for name, (levels, shape, seeds, epochs) in cases.items():
        data = tiny_data(**shape)
        out[name] = {"alone": [keep(train_run(data, levels, s, epochs)) for s in seeds],
                     "stacked": [keep(r) for r in train_runs(data, levels, seeds, epochs)]}
    return out


def worst(a: list[dict], b: list[dict]) -> tuple[float, bool]:
    """Largest relative difference of a float outcome, and whether the exact ones all agree."""
    rel = max((abs(x[k] - y[k]) / max(abs(x[k]), abs(y[k]), 1e-12)
               for x, y in zip(a, b) for k in FLOATS if not (math.isnan(x[k]) and math.isnan(y[k]))), default=0.0)
    return rel, all(x[k] == y[k] for x, y in zip(a, b) for k in EXACT)


def main():
    if len(sys.argv) == 2:   # child: one environment
        Path(sys.argv[1]).write_text(json.dumps(runs()))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for env_name, env in ENVIRONMENTS.items():
            path = Path(tmp) / "runs.json"
            subprocess.run([sys.executable, __file__, str(path)], check=True, env={**os.environ, **env},
                           stderr=subprocess.DEVNULL)
            results[env_name] = json.loads(path.read_text())
    base = results["this CPU"]
    print("| runs | environment | stacked vs alone | alone here vs stacked there | exact outcomes agree |")
    print("| --- | --- | --- | --- | --- |")
    for group in ("healthy", "chaotic"):
        for env_name, res in results.items():
            names = [n for n in res if (n == "chaotic") == (group == "chaotic")]
            within = [worst(res[n]["alone"], res[n]["stacked"]) for n in names]
            across = [worst(base[n]["alone"], res[n]["stacked"]) for n in names]
            print(f"| {group} | {env_name} | {max(w for w, _ in within):.1e} | {max(w for w, _ in across):.1e} "
                  f"| {all(e for _, e in within + across)} |")


if __name__ == "__main__":
    main()
