"""Command line: one subcommand per pipeline step, each a thin call into the package.

Snakemake rules call these. Heavy imports (torch, pymc) happen inside the subcommand
that needs them, so each step's process pays only for its own. Any WhatmattersError
reaches the user as one line on stderr and exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

PROCESS_STARTED = time.time()  # as early as this module can see; imports follow


def study_or_exit(config: dict) -> dict:
    """The checked study, or one clear message on stderr and exit status 2."""
    return study_and_design_or_exit(config)[0]


def study_and_design_or_exit(config: dict) -> tuple[dict, dict]:
    """The checked study and its expanded design (what the Snakefile needs), or one clear
    message on stderr and exit status 2."""
    from whatmatters.design import expand
    from whatmatters.errors import StudyError
    from whatmatters.study import load_study

    try:
        study = load_study(config)
        check_data(study)
        return study, expand(study)  # a random design may ask for more configs than the factors allow
    except StudyError as e:
        print(f"whatmatters: invalid study: {e}", file=sys.stderr)
        sys.exit(2)


def check_data(study: dict, prepared_dir: str = "results/data") -> None:
    """StudyError naming a dataset whose files cannot be found, unless it is prepared already."""
    from pathlib import Path

    from whatmatters.data import unavailable
    from whatmatters.errors import StudyError

    for d in study["datasets"]:
        if not (Path(prepared_dir) / f"{d['name']}.pt").exists():
            problem = unavailable(d["kind"], d["settings"])
            if problem:
                raise StudyError(f"datasets ({d['name']}, kind {d['kind']}).root: {problem}")


def _study_from_file(path: str) -> dict:
    from whatmatters.config import read_config
    from whatmatters.study import load_study

    study = load_study(read_config(path))
    check_data(study)
    return study


def cmd_check(args) -> None:
    from whatmatters.design import expand

    study = _study_from_file(args.config)
    expanded = expand(study)
    print(f"{args.config}: ok — {len(expanded['configs'])} configs x {len(study['datasets'])} datasets "
          f"x {len(study['seeds'])} seeds = {len(expanded['runs'])} runs in {len(expanded['jobs'])} jobs")


def cmd_schema(args) -> None:
    from whatmatters.schema import schema_yaml

    sys.stdout.write(schema_yaml())


def cmd_kinds(args) -> None:
    from whatmatters.schema import kinds_markdown

    sys.stdout.write(kinds_markdown())


def cmd_design(args) -> None:
    from whatmatters.design import expand, write_design_tsv

    study = json.loads(args.study)
    write_design_tsv(study, expand(study), args.out)


def cmd_prepare(args) -> None:
    from whatmatters.data import prepare
    from whatmatters.io import provenance

    spec = json.loads(args.spec)
    prepare(spec, args.out, provenance(settings=spec))


def cmd_train(args) -> None:
    from whatmatters.train import train_job

    spec = json.loads(args.spec)
    try:
        m = train_job(spec, args.data, args.run_dir, args.out, args.threads, PROCESS_STARTED)
    except Exception as e:  # a crash (bug, OOM): name the runs it leaves without a record
        _training_failed(spec, args, e)
        return
    print(f"{m['dataset']}: trained {m['trained']} runs, reused {m['reused']}; timing {m['timing']}")


def _stored_runs(spec: dict, run_dir: str) -> dict[str, dict]:
    """{run_id: record} of the job's runs in the run store that a rerun would reuse (same key)."""
    from whatmatters import train
    from whatmatters.errors import WhatmattersError

    try:
        device = train.resolve_device(spec["execution"]["device"])
    except WhatmattersError:   # no such device here: nothing was trained on it
        return {}
    precision = train.resolve_execution(spec["execution"], device, len(spec["seeds"]))["precision"]
    stored, _ = train.run_store(spec, run_dir, train.code_fingerprint(), precision)
    return {record["run_id"]: record for record in stored.values()}


def _training_failed(spec: dict, args, error: Exception) -> None:
    """Exit 1 naming the job's runs without a record, so that Snakemake retries the job;
    on its last attempt with analysis.allow_missing, write a manifest that records them as
    missing instead (whatmatters.aggregate reads it) and return (exit 0)."""
    import traceback

    from whatmatters.aggregate import listed
    from whatmatters.errors import WhatmattersError
    from whatmatters.io import provenance, write_json

    if not isinstance(error, WhatmattersError):
        traceback.print_exc()   # the evidence for a bug, in the job's log
    run_ids = [f"{spec['dataset']['name']}-{c['config_id']}-{seed}" for c in spec["configs"] for seed in spec["seeds"]]
    stored = _stored_runs(spec, args.run_dir)
    missing = [r for r in run_ids if r not in stored]
    what = (f"training failed on attempt {args.attempt} of {args.attempts} ({type(error).__name__}: {error}); "
            f"{len(missing)} of {len(run_ids)} runs of this job have no record: {listed(missing)}")
    if args.allow_missing and args.attempt >= args.attempts:
        write_json(args.out, {
            "dataset": spec["dataset"]["name"], "runs": [stored[r] for r in run_ids if r in stored],
            "trained": 0, "reused": len(run_ids) - len(missing),
            "failed": {"error": f"{type(error).__name__}: {error}", "attempts": args.attempt, "missing": missing},
            "timing": None, "provenance": provenance(step="train")})
        print(f"whatmatters train: {what}. analysis.allow_missing is true: recorded as missing in {args.out}",
              file=sys.stderr)
        return
    retry = "; Snakemake retries the job" if args.attempt < args.attempts else ""
    print(f"whatmatters train: error: {what}{retry}", file=sys.stderr)
    sys.exit(1)


def cmd_aggregate(args) -> None:
    from whatmatters.aggregate import aggregate, missing_message

    table = aggregate(args.design, args.runs_dir, args.out, args.allow_missing)
    print(f"{len(table)} runs -> {args.out}")
    if table.attrs["missing"]:
        print(f"whatmatters aggregate: warning: {missing_message(table.attrs['missing'], len(table))}; "
              "analysis.allow_missing is true, so the analysis goes on without them", file=sys.stderr)


def cmd_fit(args) -> None:
    from whatmatters import fitting, posterior
    from whatmatters.aggregate import missing_message, present_runs, read_table

    spec = json.loads(args.spec)
    table = read_table(args.table)
    runs, missing = present_runs(table, spec["allow_missing"])
    if missing:
        print(f"whatmatters fit: warning: fitting without {missing_message(missing, len(table))}", file=sys.stderr)
    idata = fitting.fit(runs, spec)
    posterior.save(idata, args.out)


def cmd_summarize(args) -> None:
    from whatmatters import posterior, summarize
    from whatmatters.aggregate import present_runs, read_table

    table, missing = present_runs(read_table(args.table), allow_missing=True) if args.table else (None, [])
    summarize.write_summaries(posterior.load(args.posterior), json.loads(args.spec), args.out_dir, table,
                              missing=missing)


def cmd_plot(args) -> None:
    from whatmatters import plots, posterior

    plots.plot_outcome(posterior.load(args.posterior), json.loads(args.spec), args.out_dir)


def cmd_compare_outcomes(args) -> None:
    from whatmatters import plots, posterior, summarize
    from whatmatters.errors import WhatmattersError

    posteriors = {}
    for item in args.posterior:
        outcome, sep, path = item.partition("=")
        if not sep:
            raise WhatmattersError(f"--posterior {item!r}: expected OUTCOME=PATH")
        posteriors[outcome] = posterior.load(path)
    summarize.write_outcome_comparison(posteriors, args.out_csv, args.contrasts_csv)
    plots.plot_outcomes(posteriors, args.plot)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="whatmatters", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, help, *arguments):
        s = sub.add_parser(name, help=help)
        for flag, kw in arguments:
            s.add_argument(flag, **kw)
        s.set_defaults(fn=fn)

    req = {"required": True}
    add("check", cmd_check, "validate a study config and print its size", ("config", {}))
    add("schema", cmd_schema, "print the JSON schema of a study config (YAML)")
    add("kinds", cmd_kinds, "print every level kind and its settings (Markdown)")
    add("design", cmd_design, "write the expanded design (one row per run)",
        ("--study", req), ("--out", req))
    add("prepare", cmd_prepare, "prepare one dataset's tensors", ("--spec", req), ("--out", req))
    add("train", cmd_train, "train one job's runs",
        ("--spec", req), ("--data", req), ("--run-dir", req), ("--out", req),
        ("--threads", {"type": int, "default": 1}),
        ("--attempt", {"type": int, "default": 1, "help": "this attempt (Snakemake's, from 1)"}),
        ("--attempts", {"type": int, "default": 1, "help": "attempts Snakemake makes in all"}),
        ("--allow-missing", {"action": "store_true",
                             "help": "on the last attempt, record a failure's runs as missing (exit 0)"}))
    add("aggregate", cmd_aggregate, "gather every run into one table",
        ("--design", req), ("--runs-dir", req), ("--out", req),
        ("--allow-missing", {"action": "store_true", "help": "runs without a record become 'missing' rows"}))
    add("fit", cmd_fit, "fit the hierarchical model for one outcome",
        ("--table", req), ("--spec", req), ("--out", req))
    add("summarize", cmd_summarize, "importance, rank probabilities, hypotheses, diagnostics",
        ("--posterior", req), ("--spec", req), ("--out-dir", req),
        ("--table", {"help": "run table (parquet) for the classical ANOVA cross-check"}))
    add("plot", cmd_plot, "posterior plots for one outcome",
        ("--posterior", req), ("--spec", req), ("--out-dir", req))
    add("compare-outcomes", cmd_compare_outcomes, "pooled ranks of every outcome side by side, and contrasts",
        ("--posterior", {"action": "append", "required": True, "help": "OUTCOME=posterior.nc, once per outcome"}),
        ("--out-csv", req), ("--contrasts-csv", req), ("--plot", req))
    return p


def main(argv: list[str] | None = None) -> None:
    from whatmatters.errors import WhatmattersError

    args = parser().parse_args(argv)
    try:
        args.fn(args)
    except WhatmattersError as e:
        print(f"whatmatters {args.command}: error: {e}", file=sys.stderr)
        sys.exit(2)
    if args.command == "train":
        # Skip interpreter teardown (~0.7 s of freeing torch): every file is written and
        # renamed into place already, so nothing is lost.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
