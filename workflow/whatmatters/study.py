"""The study: config.yaml read, checked and resolved into plain, JSON-ready dicts.

`load_study(config)` is the single gate between a user's YAML and any work: every
problem raises StudyError naming the offending key and the valid choices, before
anything is trained or written. Registries supply the valid kinds and settings.
`study_or_exit` and `study_and_design_or_exit` are that gate for the Snakefile and the
command line: one clear message and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Any

from whatmatters.catalog import DATASETS, FACTORS, SHIFTS
from whatmatters.config import read_config, study_file_for
from whatmatters.design import expand
from whatmatters.errors import StudyError, shown, some
from whatmatters.outcomes import OUTCOMES
from whatmatters.workloads import FILE_KINDS, NO_VARIANT, SHIFT_RANGES, default_shift, shift_kinds, split_problem

# Names become file names and Snakemake wildcards: keep them to a safe set.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_RULE = "letters, digits, '_', '-', '.', starting with a letter or digit, at most 64 characters"

DESIGNS = ("full", "random", "one_at_a_time")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")                      # bf16: autocast of forward and loss
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")   # layout of image tensors and weights
EXECUTION_DEFAULTS = {"runs_per_job": 24, "device": "auto", "threads": 1, "precision": "auto",
                      "memory_format": "auto", "seed_batch": "auto"}
METHODS = ("collapsed", "binomial")      # which model is fitted: whatmatters.fitting.METHODS
SAMPLERS = ("auto", "nutpie", "pymc")     # NUTS implementation; auto lets the fit choose
INTERACTIONS = (True, False, "auto")     # pairwise interactions: auto lets the fit choose by cost
                                         # (whatmatters.collapsed.AUTO_PAIRS_MAX)
ANALYSIS_DEFAULTS = {"chains": 2, "draws": 1000, "tune": 1000, "target_accept": 0.9, "seed": 1,
                     "method": "collapsed", "sampler": "auto", "interactions": "auto",
                     "allow_missing": False}  # fit without runs whose training failed (named in the logs)
# Sizes a study may ask for: well beyond any study a machine can train, well within what
# `check` plans in a second or two; a larger ask is refused before anything is built.
MAX_SEEDS = 10_000
MAX_LEVELS = 1_000      # per factor
MAX_CONFIGS = 100_000
MAX_RUNS = 1_000_000    # configs x datasets x seeds
# A claim is a chain of factor names joined by '>', most important first.
CLAIM_FACTOR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _mapping(where: str, value, required: tuple = (), optional: tuple = ()) -> dict:
    if not isinstance(value, dict):
        raise StudyError(f"{where}: expected a mapping, got {type(value).__name__} {shown(value)}")
    for key in value:
        if key not in required + optional:
            raise StudyError(f"{where}: unknown key {shown(key)}; valid keys: {', '.join(required + optional)}")
    for key in required:
        if key not in value:
            raise StudyError(f"{where}: missing required key {key!r}")
    return value


def _name(where: str, value) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):   # fullmatch: '$' would let "a\n" through
        raise StudyError(f"{where}: invalid name {shown(value)}; names may use {NAME_RULE}")
    return value


def _auto_or_positive_int(where: str, value) -> None:
    if value != "auto" and not (_is_int(value) and value >= 1):
        raise StudyError(f"{where}: expected 'auto' or an integer >= 1, got {shown(value)}")


def _positive_int(where: str, value, minimum: int = 1) -> int:
    if not _is_int(value) or value < minimum:
        raise StudyError(f"{where}: expected an integer >= {minimum}, got {shown(value)}")
    return value


def _list(where: str, value, nonempty: bool = True) -> list:
    if not isinstance(value, list) or (nonempty and not value):
        raise StudyError(f"{where}: expected a {'non-empty ' if nonempty else ''}list, got {shown(value)}")
    return value


def _unique_names(where: str, items: list[dict]) -> None:
    seen = set()
    for item in items:
        if item["name"] in seen:
            raise StudyError(f"{where}: duplicate name {item['name']!r}; names must be unique")
        seen.add(item["name"])


# The registries give each setting's type; these give its range, so that a value no level
# can train with is refused here, not by a crash mid-study. Keyed by setting, or by
# (factor, setting) where a name means different things in different factors.
def _range(ok, expected: str):
    return lambda v: None if ok(v) else expected


_ABOVE_0, _AT_LEAST_0 = _range(lambda v: v > 0, "a number > 0"), _range(lambda v: v >= 0, "a number >= 0")
_FRACTION = _range(lambda v: 0 <= v < 1, "a number in [0, 1)")
_COUNT, _COUNT_0 = _range(lambda v: v >= 1, "an integer >= 1"), _range(lambda v: v >= 0, "an integer >= 0")
GAINS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu")   # torch.nn.init.calculate_gain's
SETTING_RANGES = {
    "lr": _ABOVE_0, "eps": _ABOVE_0, "gain": _ABOVE_0, "std": _AT_LEAST_0, "momentum": _FRACTION,
    "beta1": _FRACTION, "beta2": _FRACTION, ("optimizer", "alpha"): _FRACTION, "alpha": _ABOVE_0,
    "width": _COUNT, "depth": _COUNT, "dim": _COUNT, "heads": _COUNT, "size": _COUNT, "batch_size": _COUNT,
    "patch": _range(lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "smoothing": _FRACTION, "gamma": _AT_LEAST_0, ("schedule", "gamma"): _ABOVE_0, "beta": _AT_LEAST_0,
    "max_shift": _COUNT_0, "drops": _COUNT_0, "p": _FRACTION,
    ("augmentation", "p"): _range(lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "warmup": _FRACTION, "weight_decay": _AT_LEAST_0,
    "gain_nonlinearity": _range(lambda v: v in GAINS, f"one of {', '.join(GAINS)}"),
    "num_samples": _range(lambda v: v >= 20, "an integer >= 20"),
    "test_fraction": _range(lambda v: 0 < v < 1, "a number between 0 and 1"), "seed": _COUNT_0,
}


def _check_ranges(where: str, factor: str, kind: str, settings: dict) -> None:
    for key, value in settings.items():
        check = SETTING_RANGES.get((factor, key)) or SETTING_RANGES.get(key)
        expected = check(value) if check else None
        if expected:
            raise StudyError(f"{where}.{key}: expected {expected}, got {shown(value)}")
    if kind == "transformer" and settings["dim"] % settings["heads"]:
        raise StudyError(f"{where}.heads: {settings['heads']} heads do not divide dim {settings['dim']}; "
                         "choose heads that divide dim")


def _level(where: str, registry, raw) -> dict:
    """{name, kind, settings} with the kind checked and every setting resolved."""
    if not isinstance(raw, dict):
        raise StudyError(f"{where}: expected a mapping with name, kind and settings, got {shown(raw)}")
    for key in ("name", "kind"):
        if key not in raw:
            raise StudyError(f"{where}: missing required key {key!r}")
    name = _name(f"{where}.name", raw["name"])
    if raw["kind"] not in registry.kinds():
        raise StudyError(
            f"{where}.kind: unknown {registry.factor} kind {shown(raw['kind'])}; "
            f"valid kinds: {', '.join(registry.kinds())}")
    given = {k: v for k, v in raw.items() if k not in ("name", "kind")}
    settings = registry.resolve(f"{where} ({name})", raw["kind"], given)
    _check_ranges(f"{where} ({name})", registry.factor, raw["kind"], settings)
    return {"name": name, "kind": raw["kind"], "settings": settings}


# What a dataset entry may set besides its kind's settings, and a variant may override.
VARIANT_KEYS = ("label_noise", "subsample", "shift", "budget")


def _label_noise(where: str, value) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise StudyError(f"{where}: expected a number in [0, 1), got {shown(value)}")
    return float(value)


def _subsample(where: str, value) -> int | None:
    return None if value is None else _positive_int(where, value)


def _shift(where: str, raw, dataset_kind: str) -> dict:
    """{kind, settings} of a dataset's shifted test set; the kind must fit the dataset's inputs."""
    valid = shift_kinds(dataset_kind)
    if not isinstance(raw, dict) or "kind" not in raw:
        raise StudyError(f"{where}: expected a mapping with a kind ({', '.join(valid)}) and its settings, "
                         f"got {shown(raw)}")
    if raw["kind"] not in valid:
        raise StudyError(f"{where}.kind: shift kind {raw['kind']!r} does not fit dataset kind {dataset_kind!r}; "
                         f"valid kinds: {', '.join(valid)}")
    settings = SHIFTS.resolve(where, raw["kind"], {k: v for k, v in raw.items() if k != "kind"})
    for key, (ok, expected) in SHIFT_RANGES.get(raw["kind"], {}).items():
        if not ok(settings[key]):
            raise StudyError(f"{where}.{key}: expected {expected}, got {settings[key]!r}")
    return {"kind": raw["kind"], "settings": settings}


def _budget(where: str, raw) -> dict:
    budget = _mapping(where, raw, required=("epochs",))
    return {"epochs": _positive_int(f"{where}.epochs", budget["epochs"])}


def _overrides(where: str, raw: dict, dataset_kind: str) -> dict:
    """The VARIANT_KEYS an entry or a variant sets, each checked and resolved."""
    checks = {"label_noise": _label_noise, "subsample": _subsample, "budget": _budget,
              "shift": lambda w, v: _shift(w, v, dataset_kind)}
    return {key: checks[key](f"{where}.{key}", raw[key]) for key in VARIANT_KEYS if key in raw}


def _dataset_spec(level: dict, base: str, variant: str | None, given: dict) -> dict:
    """{name, kind, settings, budget, variant: {base, name, label_noise, subsample}, shift: {kind, settings}}."""
    return {**level, "budget": given["budget"], "shift": given["shift"],
            "variant": {"base": base, "name": variant, "label_noise": given["label_noise"],
                        "subsample": given["subsample"]}}


def _datasets(raw) -> list[dict]:
    """Each entry, then one entry per variant (named <entry>_<variant>): the entry's kind,
    settings, budget, shift, label_noise and subsample, with the variant's overrides."""
    out = []
    for i, item in enumerate(_list("datasets", raw)):
        where = f"datasets[{i}]"
        if not isinstance(item, dict) or "budget" not in item:
            raise StudyError(f"{where}: expected a mapping with name, kind, budget and settings, got {shown(item)}")
        level = _level(where, DATASETS, {k: v for k, v in item.items() if k not in VARIANT_KEYS + ("variants",)})
        given = {**NO_VARIANT, "shift": default_shift(level["kind"]), **_overrides(where, item, level["kind"])}
        out.append(_dataset_spec(level, level["name"], None, given))
        for j, variant in enumerate(_list(f"{where}.variants", item.get("variants", []), nonempty=False)):
            vwhere = f"{where}.variants[{j}]"
            variant = _mapping(vwhere, variant, required=("name",), optional=VARIANT_KEYS)
            name = _name(f"{vwhere}.name", variant["name"])
            full = _name(f"{vwhere}.name", f"{level['name']}_{name}")
            out.append(_dataset_spec({**level, "name": full}, level["name"], name,
                                     {**given, **_overrides(vwhere, variant, level["kind"])}))
    _unique_names("datasets", out)
    for i, d in enumerate(out):
        problem = split_problem(d["kind"], d["settings"], d["variant"]["subsample"])
        if problem:
            raise StudyError(f"datasets ({d['name']}).{problem[0]}: {problem[1]}")
    return out


def _factors(raw) -> dict[str, dict]:
    raw = _mapping("factors", raw, required=tuple(FACTORS))
    out = {}
    for factor, registry in FACTORS.items():
        where = f"factors.{factor}"
        spec = _mapping(where, raw[factor], required=("levels",), optional=("baseline",))
        if isinstance(spec["levels"], list) and len(spec["levels"]) > MAX_LEVELS:
            raise StudyError(f"{where}.levels: {len(spec['levels']):,} levels; at most {MAX_LEVELS:,} per factor")
        levels = [_level(f"{where}.levels[{i}]", registry, lv)
                  for i, lv in enumerate(_list(f"{where}.levels", spec["levels"]))]
        _unique_names(f"{where}.levels", levels)
        names = [lv["name"] for lv in levels]
        baseline = spec.get("baseline", names[0])
        if baseline not in names:
            raise StudyError(f"{where}.baseline: {shown(baseline)} is not one of its levels: {some(names)}")
        out[factor] = {"baseline": baseline, "levels": {lv["name"]: lv for lv in levels}}
    return out


def _design(raw) -> dict:
    raw = _mapping("design", raw, required=("kind",), optional=("n_configs", "seed"))
    if raw["kind"] not in DESIGNS:
        raise StudyError(f"design.kind: unknown design {raw['kind']!r}; valid designs: {', '.join(DESIGNS)}")
    design = {"kind": raw["kind"]}
    if raw["kind"] == "random":
        if "n_configs" not in raw:
            raise StudyError("design.n_configs: required for the random design")
        design["n_configs"] = _positive_int("design.n_configs", raw["n_configs"])
        design["seed"] = _positive_int("design.seed", raw.get("seed", 0), minimum=0)
    elif "n_configs" in raw or "seed" in raw:
        raise StudyError(f"design: n_configs and seed apply only to kind 'random', not {raw['kind']!r}")
    return design


def _check_size(factors: dict, design: dict, n_datasets: int, n_seeds: int) -> None:
    """StudyError when the design has more configs or runs than MAX_CONFIGS / MAX_RUNS,
    counted without building them."""
    sizes = [len(spec["levels"]) for spec in factors.values()]
    grid = math.prod(sizes)
    configs = {"full": grid, "one_at_a_time": 1 + sum(k - 1 for k in sizes)}.get(design["kind"])
    where = "design.kind"
    if configs is None:
        where, configs = "design.n_configs", design["n_configs"]
        if configs > grid:
            raise StudyError(f"design.n_configs: {configs} exceeds the {grid} distinct configs the factors allow; "
                             f"choose at most {grid} (which is kind: full)")
    if configs > MAX_CONFIGS:
        hint = "; use kind: random with n_configs" if design["kind"] == "full" else ""
        raise StudyError(f"{where}: {design['kind']} design of {configs:,} configs; at most {MAX_CONFIGS:,}{hint}")
    runs = configs * n_datasets * n_seeds
    if runs > MAX_RUNS:
        raise StudyError(f"seeds: {configs:,} configs x {n_datasets} datasets x {n_seeds:,} seeds = {runs:,} runs; "
                         f"at most {MAX_RUNS:,}: use fewer seeds, datasets or configs")


def _seeds(raw) -> list[int]:
    expected = "an integer >= 1 (a count) or a list of distinct integers >= 0"
    if _is_int(raw):
        if raw < 1:
            raise StudyError(f"seeds: expected {expected}, got {shown(raw)}")
        if raw > MAX_SEEDS:
            raise StudyError(f"seeds: {raw:,} seeds; at most {MAX_SEEDS:,}")
        return list(range(raw))
    if not isinstance(raw, list) or not raw:
        raise StudyError(f"seeds: expected {expected}, got {shown(raw)}")
    if len(raw) > MAX_SEEDS:
        raise StudyError(f"seeds: {len(raw):,} seeds listed; at most {MAX_SEEDS:,}")
    seeds = raw
    for s in seeds:
        _positive_int("seeds[]", s, minimum=0)
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"seeds: duplicate seeds in {shown(seeds)}")
    return sorted(seeds)


def _outcomes(raw) -> list[str]:
    for o in _list("outcomes", raw):
        if not isinstance(o, str) or o not in OUTCOMES:
            raise StudyError(f"outcomes: unknown outcome {shown(o)}; valid outcomes: {', '.join(OUTCOMES)}")
    if len(set(raw)) != len(raw):
        raise StudyError(f"outcomes: duplicate outcomes in {shown(raw)}")
    return list(raw)


def _chain(where: str, factors: list, varied: list[str]) -> list[str]:
    """A hypothesis's factors, most important first: >= 2 distinct varied factors."""
    for f in factors:
        if f not in varied:
            raise StudyError(
                f"{where}: {f!r} is not a factor varied in this study; valid factors: {', '.join(varied)}")
    if len(factors) < 2:
        raise StudyError(f"{where}: a hypothesis compares at least two factors, got {shown(factors)}")
    repeated = [f for i, f in enumerate(factors) if f in factors[:i]]
    if repeated:
        raise StudyError(f"{where}: factor {repeated[0]!r} is repeated; name each factor once, got {shown(factors)}")
    return list(factors)


def _claim(where: str, claim) -> list[str]:
    """'init > optimizer > loss' -> ['init', 'optimizer', 'loss']."""
    example = "a string like 'init > optimizer > loss' (most important first, '>' only)"
    if not isinstance(claim, str):
        raise StudyError(f"{where}: expected {example}, got {shown(claim)}")
    if "<" in claim:
        raise StudyError(f"{where}: {claim!r} uses '<'; write the chain with '>' only, most important first, "
                         f"e.g. 'init > optimizer'")
    factors = [part.strip() for part in claim.split(">")]
    for part in factors:
        if not CLAIM_FACTOR.fullmatch(part):
            raise StudyError(f"{where}: cannot read {claim!r} (at {part!r}); expected {example}")
    return factors


def _hypotheses(raw, varied: list[str]) -> list[dict]:
    """[{name, order: [factor, ...], text: "f1 > f2 > ..."}] from `order:` lists or `claim:` strings."""
    out = []
    for i, h in enumerate(_list("hypotheses", raw, nonempty=False)):
        where = f"hypotheses[{i}]"
        h = _mapping(where, h, required=("name",), optional=("order", "claim"))
        name = _name(f"{where}.name", h["name"])
        if ("order" in h) == ("claim" in h):
            raise StudyError(f"{where}: give exactly one of 'order' (a list of factors, e.g. [init, optimizer]) "
                             f"or 'claim' (a string, e.g. 'init > optimizer'); got "
                             f"{'both' if 'order' in h else 'neither'}")
        if "order" in h:
            order = _chain(f"{where}.order", _list(f"{where}.order", h["order"]), varied)
        else:
            order = _chain(f"{where}.claim", _claim(f"{where}.claim", h["claim"]), varied)
        out.append({"name": name, "order": order, "text": " > ".join(order)})
    _unique_names("hypotheses", out)
    return out


def _section(where: str, raw, defaults: dict, checks: dict) -> dict:
    raw = _mapping(where, {} if raw is None else raw, optional=tuple(defaults))
    out = {**defaults, **raw}
    for key, check in checks.items():
        check(f"{where}.{key}", out[key])
    return out


def _one_of(choices):
    def check(where, value):
        if value not in choices:
            raise StudyError(f"{where}: {shown(value)} is not valid; choose one of: {', '.join(choices)}")
    return check


def _fraction(where, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
        raise StudyError(f"{where}: expected a number between 0 and 1, got {shown(value)}")


def _interactions(where, value):
    if value not in INTERACTIONS or (value in (0, 1) and not isinstance(value, bool)):
        raise StudyError(f"{where}: expected true, false or auto, got {shown(value)}")


def _boolean(where, value):
    if not isinstance(value, bool):
        raise StudyError(f"{where}: expected true or false, got {shown(value)}")


def load_study(config: dict[str, Any]) -> dict:
    """Check a study config (as loaded from YAML) and return it resolved.

    Returns {datasets: [{name, kind, settings, budget, variant, shift}] (see _dataset_spec),
    factors: {factor: {baseline, levels: {name: {name, kind, settings}}}}, design, seeds: [int], outcomes: [str],
    hypotheses: [{name, order: [factor, ...], text: "f1 > f2"}], execution, analysis,
    varied: [factor]}.
    Raises StudyError naming the first offending key and the valid choices.
    """
    config = _mapping("config", config, required=("datasets", "factors", "design", "seeds", "outcomes"),
                      optional=("hypotheses", "execution", "analysis"))
    factors = _factors(config["factors"])
    varied = [f for f, spec in factors.items() if len(spec["levels"]) > 1]
    if len(varied) < 2:
        raise StudyError(f"factors: at least two factors need two or more levels to compare; varied: {varied}")
    analysis = _section("analysis", config.get("analysis"), ANALYSIS_DEFAULTS, {
        "chains": _positive_int, "draws": _positive_int, "tune": _positive_int,
        "target_accept": _fraction, "seed": lambda w, v: _positive_int(w, v, minimum=0),
        "method": _one_of(METHODS), "sampler": _one_of(SAMPLERS), "interactions": _interactions,
        "allow_missing": _boolean})
    if analysis["interactions"] is True and analysis["method"] != "collapsed":
        raise StudyError("analysis.interactions: true needs analysis.method: collapsed; "
                         "the binomial model has main effects only")
    outcomes = _outcomes(config["outcomes"])
    continuous = [o for o in outcomes if OUTCOMES[o]["kind"] != "binomial"]
    if continuous and analysis["method"] != "collapsed":
        raise StudyError(f"analysis.method: binomial models counts only; outcomes {continuous} are "
                         "continuous measurements: use method: collapsed or drop them from outcomes")
    datasets, design, seeds = _datasets(config["datasets"]), _design(config["design"]), _seeds(config["seeds"])
    _check_size(factors, design, len(datasets), len(seeds))
    return {
        "datasets": datasets,
        "factors": factors,
        "varied": varied,
        "design": design,
        "seeds": seeds,
        "outcomes": outcomes,
        "hypotheses": _hypotheses(config.get("hypotheses", []), varied),
        "execution": _section("execution", config.get("execution"), EXECUTION_DEFAULTS, {
            "runs_per_job": _positive_int, "device": _one_of(DEVICES), "threads": _positive_int,
            "precision": _one_of(PRECISIONS), "memory_format": _one_of(MEMORY_FORMATS),
            "seed_batch": _auto_or_positive_int}),
        "analysis": analysis,
    }


def study_or_exit(config: dict) -> dict:
    """The checked study, or one clear message on stderr and exit status 2."""
    return study_and_design_or_exit(config)[0]


def study_and_design_or_exit(config: dict) -> tuple[dict, dict]:
    """The checked study and its expanded design, or one clear message on stderr and
    exit status 2."""
    try:
        return _study_and_design(config)
    except StudyError as e:
        _exit(e)


def study_file_or_exit(configfiles, overrides=None) -> tuple[dict, dict, dict]:
    """What the Snakefile runs: (the study file's data, the checked study, its design),
    read from the --configfile (`configfiles`, Snakemake's list) or else config.yaml, by
    the same code as `whatmatters check FILE`; or one clear message and exit status 2.
    The file is the whole study: nothing is merged into it, and `--config KEY=VALUE`
    (`overrides`) is refused rather than merged."""
    path = None
    try:
        if overrides:
            raise StudyError(f"--config {', '.join(map(str, overrides))}: settings are not taken from the command "
                             "line; write them in the study file (it is the whole study)")
        path = study_file_for(configfiles)
        raw = read_config(path)
        return (raw, *_study_and_design(raw))
    except StudyError as e:
        _exit(e, path)


def study_from_file(path) -> dict:
    """The checked study of a file (what `whatmatters check FILE` reads)."""
    study = load_study(read_config(path))
    check_data(study)
    return study


def _study_and_design(config: dict) -> tuple[dict, dict]:
    study = load_study(config)
    check_data(study)
    return study, expand(study)  # a random design may ask for more configs than the factors allow


def _exit(error: StudyError, path=None):
    message = str(error)
    if path is not None and not message.startswith(str(path)):
        message = f"{path}: {message}"
    print(f"whatmatters: invalid study: {message}", file=sys.stderr)
    sys.exit(2)


def check_data(study: dict, prepared_dir: str = "results/data") -> None:
    """StudyError naming a dataset whose files cannot be found, unless it is prepared already."""
    for d in study["datasets"]:
        if d["kind"] in FILE_KINDS and not (Path(prepared_dir) / f"{d['name']}.pt").exists():
            from whatmatters.data import unavailable   # torchvision names the files: only for these kinds

            problem = unavailable(d["kind"], d["settings"])
            if problem:
                raise StudyError(f"datasets ({d['name']}, kind {d['kind']}).root: {problem}")
