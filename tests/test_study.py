"""The study gate: the default config passes, malformed ones get one clear message."""

import jsonschema
import pytest
import yaml

from conftest import ROOT
from helpers import mutate
from whatmatters.config import read_config
from whatmatters.errors import StudyError
from whatmatters.schema import schema_yaml
from whatmatters.study import load_study


@pytest.fixture(scope="module")
def default_config():
    return read_config(ROOT / "config.yaml")


def test_default_study_is_valid_and_complete(default_config):
    study = load_study(default_config)
    assert [d["name"] for d in study["datasets"]] == ["mnist1d", "digits"]
    assert study["varied"] == ["init", "optimizer", "architecture", "loss", "augmentation", "schedule",
                               "regularization"]
    assert study["hypotheses"][0]["order"] == study["varied"]  # the starting hierarchy
    assert study["factors"]["optimizer"]["levels"]["adam"]["settings"]["lr"] == 0.002
    assert study["factors"]["schedule"]["levels"]["cosine"]["settings"]["batch_size"] == 128


def test_schema_file_is_generated_from_the_registries():
    assert (ROOT / "workflow/schemas/config.schema.yaml").read_text() == schema_yaml(), (
        "regenerate: python -m whatmatters schema > workflow/schemas/config.schema.yaml")


def test_schema_accepts_the_default_study(default_config):
    schema = yaml.safe_load(schema_yaml())
    jsonschema.validate(default_config, schema)


BAD = [
    (("factors", "momentum"), {"levels": []}, r"factors: unknown key 'momentum'; valid keys: init, optimizer"),
    (("factors", "init"), ..., r"factors: missing required key 'init'"),
    (("factors", "init", "levels", 0, "kind"), "kaiming_magic",
     r"factors.init.levels\[0\].kind: unknown init kind 'kaiming_magic'; valid kinds: default, he"),
    (("factors", "optimizer", "levels", 2, "betas"), [0.9, 0.99],
     r"levels\[2\] \(adam\): unknown setting 'betas' for optimizer kind 'adam'; valid settings: lr, beta1"),
    (("factors", "optimizer", "levels", 2, "lr"), "fast", r"levels\[2\] \(adam\).lr: expected a finite number"),
    (("factors", "optimizer", "baseline"), "adagrad", r"factors.optimizer.baseline: 'adagrad' is not one of its levels"),
    (("factors", "loss", "levels"), [], r"factors.loss.levels: expected a non-empty list"),
    (("factors", "loss", "levels", 1, "name"), "cross_entropy", r"factors.loss.levels: duplicate name 'cross_entropy'"),
    (("factors", "loss", "levels", 1, "name"), "../etc", r"factors.loss.levels\[1\].name: invalid name '../etc'"),
    (("factors", "loss", "levels", 1, "name"), "a b;rm", r"invalid name 'a b;rm'"),
    (("datasets", 0, "budget", "epochs"), 0, r"datasets\[0\].budget.epochs: expected an integer >= 1, got 0"),
    (("datasets", 0, "budget", "epochs"), -3, r"datasets\[0\].budget.epochs: expected an integer >= 1, got -3"),
    (("datasets", 0, "kind"), "imagenet", r"datasets\[0\].kind: unknown dataset kind 'imagenet'; valid kinds: mnist1d, digits"),
    (("datasets", 1, "name"), "mnist1d", r"datasets: duplicate name 'mnist1d'"),
    (("datasets",), [], r"datasets: expected a non-empty list"),
    (("design", "kind"), "latin", r"design.kind: unknown design 'latin'; valid designs: full, random, one_at_a_time"),
    (("design", "n_configs"), 0, r"design.n_configs: expected an integer >= 1"),
    (("seeds",), 0, r"seeds: expected an integer >= 1"),
    (("seeds",), [1, 1], r"seeds: duplicate seeds"),
    (("outcomes",), ["test_acc"], r"outcomes: unknown outcome 'test_acc'; valid outcomes: test_accuracy, train_accuracy"),
    (("hypotheses", 0, "order"), ["init", "warmup"], r"hypotheses\[0\].order: 'warmup' is not a factor varied in this study"),
    (("hypotheses", 0, "order"), ["init"], r"hypotheses\[0\].order: a hypothesis compares at least two factors"),
    (("hypotheses", 0, "order"), ["init", "loss", "init"], r"hypotheses\[0\].order: factor 'init' is repeated"),
    (("hypotheses", 0, "claim"), "init > loss",
     r"hypotheses\[0\]: give exactly one of 'order' \(a list of factors.*\) or 'claim' \(a string.*got both"),
    (("hypotheses", 0), {"name": "h"}, r"hypotheses\[0\]: give exactly one of 'order' .* or 'claim' .*got neither"),
    (("hypotheses", 0), {"name": "h", "claim": "init > warmup"},
     r"hypotheses\[0\].claim: 'warmup' is not a factor varied in this study; valid factors: init, optimizer, ar"),
    (("hypotheses", 0), {"name": "h", "claim": "init"}, r"hypotheses\[0\].claim: a hypothesis compares at least two"),
    (("hypotheses", 0), {"name": "h", "claim": "loss > init > loss"}, r"hypotheses\[0\].claim: factor 'loss' is repeated"),
    (("hypotheses", 0), {"name": "h", "claim": "loss < init"},
     r"hypotheses\[0\].claim: 'loss < init' uses '<'; write the chain with '>' only"),
    (("hypotheses", 0), {"name": "h", "claim": "init >> loss"},
     r"hypotheses\[0\].claim: cannot read 'init >> loss' \(at ''\); expected a string like 'init > optimizer > loss'"),
    (("hypotheses", 0), {"name": "h", "claim": "init, loss > optimizer"}, r"hypotheses\[0\].claim: cannot read .* \(at 'init, loss'\)"),
    (("hypotheses", 0), {"name": "h", "claim": ["init", "loss"]}, r"hypotheses\[0\].claim: expected a string like"),
    (("hypotheses", 0), {"name": "h", "claim": "init > loss", "why": "?"},
     r"hypotheses\[0\]: unknown key 'why'; valid keys: name, order, claim"),
    (("execution", "device"), "tpu", r"execution.device: 'tpu' is not valid; choose one of: auto, cpu, cuda"),
    (("analysis", "target_accept"), 1.5, r"analysis.target_accept: expected a number between 0 and 1"),
    (("analysis", "method"), "poisson", r"analysis.method: 'poisson' is not valid; choose one of: collapsed, binomial"),
    (("analysis", "sampler"), "numpyro", r"analysis.sampler: 'numpyro' is not valid; choose one of: auto, nutpie, pymc"),
    (("analysis", "interactions"), "yes", r"analysis.interactions: expected true, false or auto, got 'yes'"),
    (("analysis", "interactions"), 1, r"analysis.interactions: expected true, false or auto, got 1"),
    (("trainer",), {}, r"config: unknown key 'trainer'"),
]


@pytest.mark.parametrize("path, value, message", BAD, ids=[m.split(":")[0][:40] for _, _, m in BAD])
def test_bad_study_gets_one_clear_message(default_config, path, value, message):
    with pytest.raises(StudyError, match=message):
        load_study(mutate(default_config, path, value))


def test_hypotheses_resolve_from_orders_and_claims(default_config):
    config = mutate(default_config, ("hypotheses",), [
        {"name": "init_first", "claim": "init > regularization"},
        {"name": "chain", "claim": "  init>optimizer >   loss "},
        {"name": "listed", "order": ["loss", "init"]},
    ])
    assert load_study(config)["hypotheses"] == [
        {"name": "init_first", "order": ["init", "regularization"], "text": "init > regularization"},
        {"name": "chain", "order": ["init", "optimizer", "loss"], "text": "init > optimizer > loss"},
        {"name": "listed", "order": ["loss", "init"], "text": "loss > init"},
    ]
    jsonschema.validate(config, yaml.safe_load(schema_yaml()))


def test_schema_rejects_what_the_study_rejects_for_claims(default_config):
    schema = yaml.safe_load(schema_yaml())
    for bad in [{"name": "h"}, {"name": "h", "claim": "loss < init"},
                {"name": "h", "claim": "init > loss", "order": ["init", "loss"]}]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(mutate(default_config, ("hypotheses", 0), bad), schema)


def test_analysis_defaults_and_overrides(default_config):
    analysis = load_study(mutate(default_config, ("analysis",), {}))["analysis"]
    assert {k: analysis[k] for k in ("method", "sampler", "interactions")} == {
        "method": "collapsed", "sampler": "auto", "interactions": "auto"}
    config = mutate(default_config, ("analysis",), {"method": "collapsed", "sampler": "nutpie", "interactions": True})
    jsonschema.validate(config, yaml.safe_load(schema_yaml()))
    assert load_study(config)["analysis"]["interactions"] is True


def test_interactions_need_the_collapsed_model(default_config):
    # refused before any training, not after it at fit time
    config = mutate(default_config, ("analysis",), {"method": "binomial", "interactions": True})
    with pytest.raises(StudyError, match=r"analysis.interactions: true needs analysis.method: collapsed"):
        load_study(config)


def test_random_design_cannot_ask_for_more_configs_than_exist(default_config):
    from whatmatters.design import expand

    config = mutate(default_config, ("design", "n_configs"), 10**6)
    with pytest.raises(StudyError, match="exceeds the 16384 distinct configs"):
        expand(load_study(config))


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "study.yaml"
    bad.write_text("factors: [unclosed\n")
    with pytest.raises(StudyError, match="study.yaml is not valid YAML"):
        read_config(bad)
    with pytest.raises(StudyError, match="cannot read study config"):
        read_config(tmp_path / "absent.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("datasets: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(StudyError, match=r"datasets \(line 1\): YAML tag '!!python/object/apply:os.system' is not"):
        read_config(evil)


def test_kinds_reference_is_generated_from_the_registries():
    from whatmatters.schema import kinds_markdown

    assert (ROOT / "docs/kinds.md").read_text() == kinds_markdown(), (
        "regenerate: python -m whatmatters kinds > docs/kinds.md")


def test_the_catalog_is_what_the_registries_say():
    """catalog.json (what checking a study reads, without torch) is generated from the
    registries: regenerate it with `python -m whatmatters catalog > workflow/whatmatters/catalog.json`."""
    from whatmatters.catalog import PATH
    from whatmatters.schema import catalog_json

    assert PATH.read_text() == catalog_json()


def test_checking_a_study_imports_neither_torch_nor_pandas(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from whatmatters.cli import main\n"
            f"main(['check', {str(ROOT / 'config.yaml')!r}])\n"
            "print(sorted(m for m in ('torch', 'pandas', 'pymc', 'torchvision') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "workflow")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
