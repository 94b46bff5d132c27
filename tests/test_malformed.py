"""Bad input through the user's entry points: every malformed study gets a non-zero exit and
one clear message naming the key and the valid choices, before any work, leaving no
results/ behind. In process through `study_or_exit` (what the Snakefile calls) and
`whatmatters check`; a representative subset through `snakemake -n`; and fuzzed."""

import contextlib
import copy
import io
import os
import re
import subprocess
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from helpers import mutate
from test_pipeline import snakemake
from whatmatters.cli import main
from whatmatters.config import read_config
from whatmatters.errors import StudyError
from whatmatters.study import NAME, study_or_exit

TINY = ROOT / "tests/data/tiny.yaml"
BASE = yaml.safe_load(TINY.read_text())
ONE_LINE = re.compile(r"^whatmatters: invalid study: [^\n]+\n$")


def edit(path, value):
    """A copy of the tiny study with the value at `path` (keys and indices) replaced,
    deleted (value ...) or, for a dict value at a missing key, added."""
    return mutate(BASE, path, value)


def level(factor, i, **changes):
    return edit(("factors", factor, "levels", i), {**BASE["factors"][factor]["levels"][i], **changes})


# (id, config, the message: key named, valid choices named)
MALFORMED = [
    ("unknown factor", edit(("factors", "momentum"), {"levels": [{"name": "m", "kind": "sgd"}]}),
     r"factors: unknown key 'momentum'; valid keys: init, optimizer, architecture, loss, augmentation, schedule"),
    ("missing factor", edit(("factors", "loss"), ...), r"factors: missing required key 'loss'"),
    ("unknown level kind", level("optimizer", 0, kind="adamm"),
     r"factors.optimizer.levels\[0\].kind: unknown optimizer kind 'adamm'; valid kinds: sgd, nesterov, adam"),
    ("unknown init kind", level("init", 1, kind="kaiming_magic"),
     r"factors.init.levels\[1\].kind: unknown init kind 'kaiming_magic'; valid kinds: default, he, xavier"),
    ("unknown setting", level("optimizer", 0, betas=[0.9, 0.99]),
     r"levels\[0\] \(adam\): unknown setting 'betas' for optimizer kind 'adam'; valid settings: lr, beta1"),
    ("missing required setting", edit(("factors", "optimizer", "levels", 1), {"name": "sgd", "kind": "sgd"}),
     r"levels\[1\] \(sgd\): missing required setting 'lr' for optimizer kind 'sgd'"),
    ("string for a number", level("optimizer", 0, lr="fast"),
     r"levels\[0\] \(adam\).lr: expected a finite number, got 'fast'"),
    ("float for an integer", level("architecture", 0, width=16.5),
     r"levels\[0\] \(mlp\).width: expected a finite integer, got 16.5"),
    ("boolean for a number", level("optimizer", 1, lr=True), r"levels\[1\] \(sgd\).lr: expected a finite number"),
    ("infinite number", level("optimizer", 1, lr=float("inf")), r"\(sgd\).lr: expected a finite number, got inf"),
    ("levels not a list", edit(("factors", "loss", "levels"), {"name": "ce", "kind": "cross_entropy"}),
     r"factors.loss.levels: expected a non-empty list"),
    ("level not a mapping", edit(("factors", "loss", "levels", 0), "cross_entropy"),
     r"factors.loss.levels\[0\]: expected a mapping with name, kind and settings"),
    ("seeds not a number", edit(("seeds",), "three"),
     r"seeds: expected an integer >= 1 \(a count\) or a list of distinct integers >= 0, got 'three'"),
    ("zero budget", edit(("datasets", 0, "budget", "epochs"), 0),
     r"datasets\[0\].budget.epochs: expected an integer >= 1, got 0"),
    ("negative budget", edit(("datasets", 1, "budget", "epochs"), -2),
     r"datasets\[1\].budget.epochs: expected an integer >= 1, got -2"),
    ("fractional budget", edit(("datasets", 1, "budget", "epochs"), 1.5), r"budget.epochs: expected an integer >= 1"),
    ("budget without epochs", edit(("datasets", 1, "budget"), {"steps": 100}),
     r"datasets\[1\].budget: unknown key 'steps'; valid keys: epochs"),
    ("zero learning rate", level("optimizer", 1, lr=0), r"levels\[1\] \(sgd\).lr: expected a number > 0, got 0"),
    ("negative learning rate", level("optimizer", 0, lr=-0.01), r"\(adam\).lr: expected a number > 0, got -0.01"),
    ("zero width", level("architecture", 0, width=0), r"levels\[0\] \(mlp\).width: expected an integer >= 1, got 0"),
    ("zero batch size", level("schedule", 0, batch_size=0), r"\(constant\).batch_size: expected an integer >= 1"),
    ("negative std", level("init", 1, std=-1.0), r"\(small_normal\).std: expected a number >= 0, got -1.0"),
    ("zero runs per job", edit(("execution", "runs_per_job"), 0), r"execution.runs_per_job: expected an integer >= 1"),
    ("negative threads", edit(("execution", "threads"), -1), r"execution.threads: expected an integer >= 1, got -1"),
    ("zero seeds", edit(("seeds",), 0), r"seeds: expected an integer >= 1 \(a count\) or a list of distinct integers >= 0, got 0"),
    ("negative seed", edit(("seeds",), [0, -1]), r"seeds\[\]: expected an integer >= 0, got -1"),
    ("zero draws", edit(("analysis", "draws"), 0), r"analysis.draws: expected an integer >= 1, got 0"),
    ("empty level list", edit(("factors", "loss", "levels"), []), r"factors.loss.levels: expected a non-empty list"),
    ("empty datasets", edit(("datasets",), []), r"datasets: expected a non-empty list"),
    ("empty outcomes", edit(("outcomes",), []), r"outcomes: expected a non-empty list"),
    ("duplicate level names", level("loss", 1, name="ce"), r"factors.loss.levels: duplicate name 'ce'"),
    ("duplicate dataset names", edit(("datasets", 1, "name"), "mnist1d"), r"datasets: duplicate name 'mnist1d'"),
    ("duplicate variant", edit(("datasets", 1, "variants"), [{"name": "noisy", "label_noise": 0.1},
                                                             {"name": "noisy", "subsample": 100}]),
     r"datasets: duplicate name 'digits_noisy'"),
    ("duplicate hypotheses", edit(("hypotheses",), [{"name": "h", "claim": "init > loss"},
                                                    {"name": "h", "claim": "loss > init"}]),
     r"hypotheses: duplicate name 'h'"),
    ("duplicate seeds", edit(("seeds",), [1, 1]), r"seeds: duplicate seeds"),
    ("duplicate outcomes", edit(("outcomes",), ["test_accuracy", "test_accuracy"]), r"outcomes: duplicate outcomes"),
    ("baseline not a level", edit(("factors", "optimizer", "baseline"), "adagrad"),
     r"factors.optimizer.baseline: 'adagrad' is not one of its levels: adam, sgd"),
    ("unknown dataset kind", edit(("datasets", 0, "kind"), "imagenet"),
     r"datasets\[0\].kind: unknown dataset kind 'imagenet'; valid kinds: mnist1d, digits, mnist_5k, mnist, fashion_mnist"),
    ("dataset files not found", edit(("datasets", 1), {"name": "cifar", "kind": "cifar10", "root": "no_such_dir",
                                                       "budget": {"epochs": 1}}),
     r"datasets \(cifar, kind cifar10\).root: no cifar10 files under no_such_dir/: put cifar-10-batches-py/"
     r"data_batch_1, .* or set `download: true`"),
    ("level name with a path separator", level("loss", 1, name="a/b"),
     r"factors.loss.levels\[1\].name: invalid name 'a/b'; names may use letters, digits, '_', '-', '.'"),
    ("level name climbing up", level("loss", 1, name="../etc"), r"levels\[1\].name: invalid name '../etc'"),
    ("level name of dots", level("init", 0, name=".."), r"levels\[0\].name: invalid name '..'"),
    ("level name with shell characters", level("init", 0, name="x;rm -rf ~"), r"invalid name 'x;rm -rf ~'"),
    ("level name with a substitution", level("init", 0, name="$(id)"), r"invalid name '\$\(id\)'"),
    ("level name with a backtick", level("optimizer", 0, name="`id`"), r"invalid name '`id`'"),
    ("level name too long", level("init", 0, name="x" * 65), r"invalid name 'x{65}'.*at most 64 characters"),
    ("dataset name with a separator", edit(("datasets", 1, "name"), "dig/its"),
     r"datasets\[1\].name: invalid name 'dig/its'"),
    ("dataset name with a wildcard", edit(("datasets", 1, "name"), "dig*"), r"datasets\[1\].name: invalid name"),
    ("variant name with shell characters", edit(("datasets", 1, "variants"), [{"name": "a|b", "subsample": 9}]),
     r"datasets\[1\].variants\[0\].name: invalid name 'a\|b'"),
    ("hypothesis name with a separator", edit(("hypotheses", 0, "name"), "h/1"),
     r"hypotheses\[0\].name: invalid name 'h/1'"),
    ("non-string name", level("loss", 0, name=7), r"factors.loss.levels\[0\].name: invalid name 7"),
    ("hypothesis with unknown factor", edit(("hypotheses", 0, "order"), ["init", "warmup"]),
     r"hypotheses\[0\].order: 'warmup' is not a factor varied in this study; valid factors: init, optimizer, loss"),
    ("hypothesis with a fixed factor", edit(("hypotheses", 0, "order"), ["init", "architecture"]),
     r"'architecture' is not a factor varied in this study; valid factors: init, optimizer, loss"),
    ("claim with unknown factor", edit(("hypotheses", 0), {"name": "h", "claim": "init > warmup"}),
     r"hypotheses\[0\].claim: 'warmup' is not a factor varied in this study; valid factors"),
    ("unknown outcome", edit(("outcomes",), ["test_acc"]),
     r"outcomes: unknown outcome 'test_acc'; valid outcomes: test_accuracy, train_accuracy"),
    ("unknown design", edit(("design", "kind"), "latin"),
     r"design.kind: unknown design 'latin'; valid designs: full, random, one_at_a_time"),
    ("random design without size", edit(("design",), {"kind": "random"}),
     r"design.n_configs: required for the random design"),
    ("random design too large", edit(("design",), {"kind": "random", "n_configs": 9}),
     r"design.n_configs: 9 exceeds the 8 distinct configs the factors allow"),
    ("unknown device", edit(("execution", "device"), "tpu"),
     r"execution.device: 'tpu' is not valid; choose one of: auto, cpu, cuda"),
    ("unknown execution key", edit(("execution", "gpus"), 2), r"execution: unknown key 'gpus'; valid keys: runs_per_job"),
    ("allow_missing not a boolean", edit(("analysis", "allow_missing"), "yes"),
     r"analysis.allow_missing: expected true or false, got 'yes'"),
    ("unknown section", edit(("trainer",), {}), r"config: unknown key 'trainer'; valid keys: datasets, factors"),
    ("test split emptier than the classes", edit(("datasets", 1, "test_fraction"), 0.001),
     r"datasets \(digits\).test_fraction: 0.001 leaves 2 test examples for 10 classes; each split needs"),
    ("training split emptier than the classes", edit(("datasets", 1, "test_fraction"), 0.999),
     r"datasets \(digits\).test_fraction: 0.999 leaves 1 training examples for 10 classes"),
    ("mnist1d split emptier than the classes", edit(("datasets", 0, "test_fraction"), 0.99),
     r"datasets \(mnist1d\).test_fraction: 0.99 leaves 4 training examples for 10 classes"),
    ("subsample below the classes", edit(("datasets", 1, "subsample"), 5),
     r"datasets \(digits\).subsample: 5 training examples for 10 classes; use at least 10"),
    ("variant subsample beyond the training set", edit(("datasets", 1, "variants"), [{"name": "big", "subsample": 5000}]),
     r"datasets \(digits_big\).subsample: 5000 is more than the 1347 training examples available; use at most 1347"),
    ("YAML 1.1 off read as false", level("loss", 0, name=False),
     r"levels\[0\].name: invalid name False \(YAML reads unquoted yes/no/on/off/true/false as true or false: "
     r"quote a name or word, e.g. 'off'\)"),
    ("YAML 1.1 1e-3 read as a string", level("optimizer", 0, lr="1e-3"),
     r"\(adam\).lr: expected a finite number, got '1e-3' \(YAML 1.1 reads a number like 1e-3 as a string: "
     r"write 1.0e-3\)"),
    ("shift that does not fit", edit(("datasets", 0, "shift"), {"kind": "rotation"}),
     r"datasets\[0\].shift.kind: shift kind 'rotation' does not fit dataset kind 'mnist1d'; valid kinds: mnist1d"),
    ("label noise out of range", edit(("datasets", 1, "label_noise"), 1.5),
     r"datasets\[1\].label_noise: expected a number in \[0, 1\), got 1.5"),
    ("heads not dividing dim", edit(("factors", "architecture", "levels", 0),
                                    {"name": "vit", "kind": "transformer", "dim": 30, "heads": 4}),
     r"levels\[0\] \(vit\).heads: 4 heads do not divide dim 30; choose heads that divide dim"),
    ("unknown gain", level("init", 0, gain_nonlinearity="relu6"),
     r"\(he\).gain_nonlinearity: expected one of linear, sigmoid, tanh, relu"),
    ("setting outside its choices", edit(("factors", "architecture", "levels", 0),
                                         {"name": "plain", "kind": "cnn", "norm": "layer"}),
     r"levels\[0\] \(plain\).norm: expected one of batch, none, got 'layer'"),
    ("one factor varied", {**BASE, "factors": {**BASE["factors"], "loss": {"levels": BASE["factors"]["loss"]["levels"][:1]},
                                                "init": {"levels": BASE["factors"]["init"]["levels"][:1]}}},
     r"factors: at least two factors need two or more levels to compare; varied: \['optimizer'\]"),
    ("study not a mapping", ["datasets"], r"config: expected a mapping, got list"),
    ("name with a trailing newline", level("init", 0, name="he\n"), r"levels\[0\].name: invalid name 'he\\n'"),
    ("outcome not a name", edit(("outcomes",), [["test_accuracy"]]), r"outcomes: unknown outcome \['test_accuracy'\]"),
    ("section not a mapping", edit(("execution",), []), r"execution: expected a mapping, got list \[\]"),
]


@pytest.mark.parametrize("config, message", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_study_exits_with_one_message(config, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # the Snakefile's working directory: nothing may appear in it
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit:
        study_or_exit(config)
    assert exit.value.code == 2
    assert ONE_LINE.match(err.getvalue()), err.getvalue()
    assert re.search(message, err.getvalue()), err.getvalue()
    assert list(tmp_path.iterdir()) == []


def test_there_are_at_least_thirty_malformed_studies():
    assert len(MALFORMED) >= 30


BAD_YAML = [
    ("unclosed bracket", "factors: [unclosed\n", r"is not valid YAML \(line 2, column 1\): .*expected ',' or ']'"),
    ("tab indentation", "design:\n\tkind: full\n", r"is not valid YAML \(line 2, column 1\): .*'\\t'"),
    ("bad indentation", "design:\n  kind: full\n    seed: 1\n", r"is not valid YAML \(line 3, column 9\)"),
    ("python object tag", "datasets: !!python/object/apply:os.system ['touch pwned']\n",
     r": datasets \(line 1\): YAML tag '!!python/object/apply:os.system' is not allowed; a study is plain data"),
    ("duplicate key", "seeds: 2\nseeds: 3\n", r"is not valid \(line 2, column 1\): key 'seeds' is given twice"),
    ("empty file", "", r": expected a mapping of study sections \(datasets, factors, .*\), got an empty file"),
    ("a list", "- datasets\n", r": expected a mapping of study sections .*, got a list"),
]


@pytest.mark.parametrize("text, message", [c[1:] for c in BAD_YAML], ids=[c[0] for c in BAD_YAML])
def test_check_command_names_yaml_errors_in_one_line(text, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(text)
    with pytest.raises(SystemExit) as exit:
        main(["check", "study.yaml"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"whatmatters check: error: study.yaml ?{message}[^\n]*\n", err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]   # nothing executed or written


def test_check_command_names_the_key_and_valid_choices(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(level("optimizer", 0, kind="adamm")))
    with pytest.raises(SystemExit):
        main(["check", str(bad)])
    assert capsys.readouterr().err == ("whatmatters check: error: factors.optimizer.levels[0].kind: unknown optimizer "
                                       "kind 'adamm'; valid kinds: sgd, nesterov, adam, adamw, rmsprop, lion, signsgd\n")


# Through snakemake, as a user runs it: `--configfile` is merged over config.yaml, so each
# file is a whole (malformed) study. Cases picked to cover each kind of check.
# Each costs a Snakefile parse (~8 s with torch's import), so four stand for the rest.
THROUGH_SNAKEMAKE = ["unknown factor", "dataset files not found", "level name with shell characters",
                     "random design too large"]


@pytest.mark.slow
@pytest.mark.parametrize("case", THROUGH_SNAKEMAKE)
def test_snakemake_refuses_a_malformed_study_before_any_work(case, tmp_path):
    _, config, message = next(c for c in MALFORMED if c[0] == case)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, "--dry-run", config=bad, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert re.search(message, out), out
    assert len(re.findall(r"whatmatters: invalid study:", out)) == 1
    assert "Traceback" not in out
    assert not (workdir / "results").exists()


def test_snakemake_refuses_a_study_that_is_not_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("factors: [unclosed\n")
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, "--dry-run", config=bad, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Config file is not valid JSON or YAML" in out   # Snakemake's own message; `check` gives the line
    assert "Traceback" not in out
    assert not (workdir / "results").exists()


# ---------------------------------------------------------------- fuzzing

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


PATHS = [p for p in _paths(BASE) if p]


@st.composite
def mutated_studies(draw):
    config = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        node = config
        try:
            for key in path[:-1]:
                node = node[key]
            if draw(st.booleans()) and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = draw(JSONISH)
        except (KeyError, IndexError, TypeError):
            pass   # an earlier mutation removed the path
    return config


def _all_names(study):
    yield from (d["name"] for d in study["datasets"])
    yield from (h["name"] for h in study["hypotheses"])
    for spec in study["factors"].values():
        yield from spec["levels"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_studies())
def test_fuzzed_studies_are_accepted_safely_or_refused_in_one_line(config):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            study = study_or_exit(config)
        except SystemExit as e:
            assert e.code == 2
            assert ONE_LINE.match(err.getvalue()), err.getvalue()
            return
    assert err.getvalue() == ""
    for name in _all_names(study):   # whatever is accepted is safe as a path and a shell word
        assert NAME.fullmatch(name) and "/" not in name and not name.startswith(".")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_fuzzed_yaml_text_is_read_or_refused_as_a_study_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("yaml") / "study.yaml"
    path.write_text(text)
    try:
        config = read_config(path)
    except StudyError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(config, dict)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=70))
def test_any_accepted_level_name_is_a_safe_file_name(name):
    config = level("loss", 1, name=name)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            study_or_exit(config)
        except SystemExit:
            return
    assert NAME.fullmatch(name) and not set(name) & set("/\\ ;|&$`'\"*?<>()[]{}~!#\n\t") and name[0] not in ".-"


# ---------------------------------------------------------------- hostile files: one line, fast, bounded memory

def _levels(factor, n):
    kind = BASE["factors"][factor]["levels"][0]
    return {"levels": [{**kind, "name": f"l{i}"} for i in range(n)]}


def _dumped(**changes):
    study = copy.deepcopy(BASE)
    for key, value in changes.items():
        study[key] = value
    return yaml.safe_dump(study)


def _alias_bomb(key: str) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + f"\n{key}: *a9\n"


def _grid(n_levels, **design):
    factors = copy.deepcopy(BASE["factors"])
    for f in ("init", "optimizer", "loss", "augmentation", "regularization"):
        factors[f] = _levels(f, n_levels)
    return _dumped(factors=factors, **design)


HOSTILE = [   # (id, file content (str or bytes), the message names)
    ("a billion seeds", _dumped(seeds=10**9), r"seeds: 1,000,000,000 seeds; at most 10,000"),
    ("a long list of seeds", _dumped(seeds=list(range(20000))), r"seeds: 20,000 seeds listed; at most 10,000"),
    ("many levels", _dumped(factors={**BASE["factors"], "init": _levels("init", 5000)}),
     r"factors.init.levels: 5,000 levels; at most 1,000 per factor"),
    ("a huge full grid", _grid(400), r"design.kind: full design of 10,240,000,000,000 configs; at most 100,000"),
    ("a huge random design", _grid(400, design={"kind": "random", "n_configs": 10**12}),
     r"design.n_configs: random design of 1,000,000,000,000 configs; at most 100,000"),
    ("too many runs", _grid(10, design={"kind": "random", "n_configs": 90000}, seeds=20),
     r"seeds: 90,000 configs x 2 datasets x 20 seeds = 3,600,000 runs; at most 1,000,000"),
    ("alias bomb as seeds", _alias_bomb("seeds"), r"a\d\[\d+\] \(line \d+\): more than 200,000 values once aliases"),
    ("alias bomb as a level", _alias_bomb("factors"), r"more than 200,000 values once aliases"),
    ("UTF-16", "seeds: 2\n".encode("utf-16"), r"not a UTF-8 text file \(UTF-16 or binary\); save it as UTF-8"),
    ("binary", bytes(range(256)) * 40, r"not a UTF-8 text file"),
    ("Latin-1", "datasets: caf\xe9\n".encode("latin-1"), r"not UTF-8 text \(byte 13 on line 1\)"),
    ("deep flow nesting", "factors: " + "[" * 100000 + "]" * 100000 + "\n",
     r"factors\[0\]\[0\]\[0\]\[0\]\[0\]\.\.\. \(line 1\): nested deeper than 32 levels"),
    ("deep block nesting", "".join(" " * i + f"k{i}:\n" for i in range(300)) + " " * 300 + "x: 1\n",
     r"k0.k1.k2.k3.k4.k5\.\.\. \(line 33\): nested deeper than 32 levels"),
    ("a file of 20 MB", "seeds: 2\n" + "# padding\n" * 2_000_000, r"larger than 1,000,000 bytes"),
    ("a long value", _dumped(outcomes=["x" * 500000]),
     r"outcomes: unknown outcome 'xxxxxxxx+\.\.\. \(500,002 characters\)"),
]


@pytest.mark.parametrize("content, message", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_a_hostile_file_is_refused_in_one_line_fast_in_bounded_memory(content, message, tmp_path):
    """`whatmatters check` in its own process: exit 2, one line naming the key (never the
    expanded value), within 2 s of CPU time (robust to a loaded machine) and 500 MB."""
    path = tmp_path / "hostile.yaml"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    code = ("import re, time\n"
            "from whatmatters.cli import main\n"
            "start = time.process_time()\n"
            f"try: main(['check', {str(path)!r}])\n"
            "except SystemExit as e: code = e.code\n"
            "peak = re.search(r'VmHWM:\\s*(\\d+) kB', open('/proc/self/status').read())[1]\n"   # this process's peak RSS
            "print(code, time.process_time() - start, peak)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "workflow")})
    status, seconds, kilobytes = result.stdout.split()
    assert status == "2"
    assert re.fullmatch(rf"whatmatters check: error: [^\n]*{message}[^\n]*\n", result.stderr), result.stderr
    assert len(result.stderr) < 600
    assert float(seconds) <= 2.0 and int(kilobytes) <= 500_000, (seconds, kilobytes)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200) | st.text(alphabet="[]{}:&*!-? ,\n'\"#%@`|>a1", max_size=120))
def test_fuzzed_bytes_and_yaml_punctuation_are_read_or_refused_in_one_line(tmp_path_factory, content):
    """Bytes of any encoding, and YAML made of its punctuation (anchors, aliases, tags, flow
    and block collections): a mapping, or one StudyError line; never another exception."""
    path = tmp_path_factory.mktemp("yaml") / "study.yaml"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    try:
        config = read_config(path)
    except StudyError as e:
        assert "\n" not in str(e) and len(str(e)) < 1000
        return
    assert isinstance(config, dict)
