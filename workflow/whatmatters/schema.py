"""The JSON schema of a study config, generated from the registries.

workflow/schemas/config.schema.yaml is this output, committed so that Snakemake's
`validate` and editors can use it; a test fails when it falls out of date
(regenerate with `python -m whatmatters schema > workflow/schemas/config.schema.yaml`).
The package's own checks (whatmatters.study) give the friendlier messages.
"""

from __future__ import annotations

import json

import yaml

from whatmatters.data import DATASETS, SHIFTS
from whatmatters.factors import FACTORS
from whatmatters.registry import REQUIRED, Registry
from whatmatters.study import (ANALYSIS_DEFAULTS, DESIGNS, DEVICES, EXECUTION_DEFAULTS, INTERACTIONS, MEMORY_FORMATS, METHODS, NAME,
                               OUTCOMES, PRECISIONS, SAMPLERS)

_JSON_TYPES = {float: "number", int: "integer", bool: "boolean", str: "string", type(None): "null"}


def _setting_schema(setting) -> dict:
    types = sorted({_JSON_TYPES[t] for t in setting.types if not (t is int and float in setting.types)})
    out = {"type": types[0] if len(types) == 1 else types}
    if setting.choices is not None:
        out["enum"] = list(setting.choices)
    if setting.default is not REQUIRED:
        out["default"] = setting.default
    return out


def _levels_schema(registry: Registry, extra: dict | None = None, optional: dict | None = None,
                   named: bool = True) -> dict:
    """A level: {name, kind, settings...}; each kind allows exactly its own settings, the
    `extra` keys (required) and the `optional` ones. A dataset's shift has no name."""
    name = {"name": {"type": "string", "pattern": NAME.pattern}} if named else {}
    per_kind = []
    for kind in registry.kinds():
        settings = registry.settings(kind)
        props = {**name, "kind": {"const": kind},
                 **{k: _setting_schema(s) for k, s in settings.items()}, **(extra or {}), **(optional or {})}
        required = [*name, "kind"] + [k for k, s in settings.items() if s.default is REQUIRED] + list(extra or {})
        per_kind.append({"if": {"properties": {"kind": {"const": kind}}},
                         "then": {"properties": props, "required": required, "additionalProperties": False}})
    return {"type": "object", "required": [*name, "kind"],
            "properties": {"kind": {"enum": registry.kinds()}}, "allOf": per_kind}


def _dataset_options(budget: dict) -> dict:
    """What a dataset entry may set besides its kind's settings (whatmatters.study.VARIANT_KEYS),
    and its `variants`, each of which may override them. study.py also checks that a shift's
    kind fits the dataset's kind and its settings' ranges."""
    options = {"label_noise": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.0},
               "subsample": {"type": ["integer", "null"], "minimum": 1, "default": None},
               "shift": _levels_schema(SHIFTS, named=False), **budget}
    variant = {"type": "object", "required": ["name"], "additionalProperties": False,
               "properties": {"name": {"type": "string", "pattern": NAME.pattern}, **options}}
    return {**{k: v for k, v in options.items() if k not in budget},
            "variants": {"type": "array", "items": variant}}


def _claim_pattern() -> str:
    """'f1 > f2 > ...' over the known factors; repeats and unvaried factors are left to study.py."""
    factor = "(" + "|".join(FACTORS) + ")"
    return rf"^\s*{factor}(\s*>\s*{factor})+\s*$"


def schema() -> dict:
    budget = {"budget": {"type": "object", "required": ["epochs"], "additionalProperties": False,
                         "properties": {"epochs": {"type": "integer", "minimum": 1}}}}
    positive = {"type": "integer", "minimum": 1}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "whatmatters study",
        "type": "object",
        "required": ["datasets", "factors", "design", "seeds", "outcomes"],
        "additionalProperties": False,
        "properties": {
            "datasets": {"type": "array", "minItems": 1,
                         "items": _levels_schema(DATASETS, budget, _dataset_options(budget))},
            "factors": {
                "type": "object", "required": list(FACTORS), "additionalProperties": False,
                "properties": {
                    f: {"type": "object", "required": ["levels"], "additionalProperties": False,
                        "properties": {"baseline": {"type": "string"},
                                       "levels": {"type": "array", "minItems": 1, "items": _levels_schema(r)}}}
                    for f, r in FACTORS.items()},
            },
            "design": {"type": "object", "required": ["kind"], "additionalProperties": False,
                       "properties": {"kind": {"enum": list(DESIGNS)}, "n_configs": positive,
                                      "seed": {"type": "integer", "minimum": 0}}},
            "seeds": {"oneOf": [positive, {"type": "array", "minItems": 1, "uniqueItems": True,
                                           "items": {"type": "integer", "minimum": 0}}]},
            "outcomes": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": list(OUTCOMES)}},
            "hypotheses": {"type": "array", "items": {
                "type": "object", "required": ["name"], "additionalProperties": False,
                "oneOf": [{"required": ["order"]}, {"required": ["claim"]}],
                "properties": {"name": {"type": "string", "pattern": NAME.pattern},
                               "order": {"type": "array", "minItems": 2, "uniqueItems": True,
                                         "items": {"enum": list(FACTORS)}},
                               "claim": {"type": "string", "pattern": _claim_pattern()}}}},
            "execution": {"type": "object", "additionalProperties": False, "properties": {
                "runs_per_job": {**positive, "default": EXECUTION_DEFAULTS["runs_per_job"]},
                "device": {"enum": list(DEVICES), "default": EXECUTION_DEFAULTS["device"]},
                "threads": {**positive, "default": EXECUTION_DEFAULTS["threads"]},
                "precision": {"enum": list(PRECISIONS), "default": EXECUTION_DEFAULTS["precision"]},
                "memory_format": {"enum": list(MEMORY_FORMATS), "default": EXECUTION_DEFAULTS["memory_format"]},
                "seed_batch": {"oneOf": [{"const": "auto"}, positive], "default": EXECUTION_DEFAULTS["seed_batch"]}}},
            "analysis": {"type": "object", "additionalProperties": False, "properties": {
                "chains": {**positive, "default": ANALYSIS_DEFAULTS["chains"]},
                "draws": {**positive, "default": ANALYSIS_DEFAULTS["draws"]},
                "tune": {**positive, "default": ANALYSIS_DEFAULTS["tune"]},
                "target_accept": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                                  "default": ANALYSIS_DEFAULTS["target_accept"]},
                "seed": {"type": "integer", "minimum": 0, "default": ANALYSIS_DEFAULTS["seed"]},
                "method": {"enum": list(METHODS), "default": ANALYSIS_DEFAULTS["method"]},
                "sampler": {"enum": list(SAMPLERS), "default": ANALYSIS_DEFAULTS["sampler"]},
                "interactions": {"enum": list(INTERACTIONS), "default": ANALYSIS_DEFAULTS["interactions"]},
                "allow_missing": {"type": "boolean", "default": ANALYSIS_DEFAULTS["allow_missing"]}}},
        },
    }


def schema_yaml() -> str:
    header = ("# Generated by `python -m whatmatters schema` from the factor registries; do not edit.\n"
              "# The package's checks (whatmatters/study.py) give friendlier messages for the same rules.\n")
    return header + yaml.safe_dump(schema(), sort_keys=False, width=100)


def catalog_json() -> str:
    """workflow/whatmatters/catalog.json: every kind's settings, from the registries (see
    whatmatters.catalog, which reads it to check a study without importing torch)."""
    catalog = {"datasets": DATASETS.to_catalog(), "shifts": SHIFTS.to_catalog(),
               "factors": {f: r.to_catalog() for f, r in FACTORS.items()}}
    return json.dumps(catalog, indent=1) + "\n"


def _default_and_choices(setting) -> str:
    """' (default)', ' (default; one of a, b)' or '' for a required setting without choices."""
    shown = [] if setting.default is REQUIRED else [str(setting.default)]
    if setting.choices is not None:
        shown.append(f"one of {', '.join(setting.choices)}")
    return f" ({'; '.join(shown)})" if shown else ""


def kinds_markdown() -> str:
    """docs/kinds.md: every kind of every factor and dataset with its settings and defaults."""
    lines = ["# Level kinds and their settings", "",
             "Generated by `python -m whatmatters kinds` from the registries; do not edit.",
             "A level is `{name: ..., kind: ..., <settings>}`; settings without a default are required.", ""]
    for title, registry in [("datasets", DATASETS), ("dataset shifts (a dataset's `shift:`)", SHIFTS),
                            *FACTORS.items()]:
        lines += [f"## {title}", ""]
        if registry.common:
            common = ", ".join(f"`{k}` (default {s.default})" for k, s in registry.common.items())
            lines += [f"Every kind also takes {common}.", ""]
        lines += ["| kind | what it is | settings (default) |", "| --- | --- | --- |"]
        for kind in registry.kinds():
            own = registry.kind(kind).settings
            settings = ", ".join(f"`{k}`" + _default_and_choices(s) for k, s in own.items()) or "none"
            lines.append(f"| `{kind}` | {registry.kind(kind).doc} | {settings} |")
        lines.append("")
    return "\n".join(lines)
