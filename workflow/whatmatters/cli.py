"""Command line: one subcommand per pipeline step, each a thin call into the package.

Snakemake rules call these. Heavy imports (torch, pymc) happen inside the subcommand
that needs them, so each step's process pays only for its own. Any WhatmattersError
reaches the user as one line on stderr and exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time

PROCESS_STARTED = time.time()  # as early as this module can see; imports follow


def _json_arg(text: str):
    """A JSON argument given inline, or as @FILE (what the Snakemake rules pass: a large
    study's settings do not fit on a command line)."""
    from whatmatters.errors import PermanentError

    if text.startswith("@"):
        try:
            text = open(text[1:]).read()
        except OSError as e:
            raise PermanentError(f"cannot read {text[1:]}: {e.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise PermanentError(f"settings are not valid JSON ({e}); rerun the step that wrote them") from None


def cmd_check(args) -> None:
    from whatmatters.design import expand
    from whatmatters.study import study_from_file

    study = study_from_file(args.config)
    expanded = expand(study)
    print(f"{args.config}: ok — {len(expanded['configs'])} configs x {len(study['datasets'])} datasets "
          f"x {len(study['seeds'])} seeds = {len(expanded['runs'])} runs in {len(expanded['jobs'])} jobs")


def cmd_status(args) -> None:
    from whatmatters.design import expand
    from whatmatters.status import status_text, study_status
    from whatmatters.config import read_config
    from whatmatters.study import load_study

    study = load_study(read_config(args.config))
    sys.stdout.write(f"study {args.config}, runs under {args.runs_dir}/\n")
    sys.stdout.write(status_text(study_status(study, expand(study), args.runs_dir)))


def cmd_schema(args) -> None:
    from whatmatters.schema import schema_yaml

    sys.stdout.write(schema_yaml())


def cmd_catalog(args) -> None:
    from whatmatters.schema import catalog_json

    sys.stdout.write(catalog_json())


def cmd_kinds(args) -> None:
    from whatmatters.schema import kinds_markdown

    sys.stdout.write(kinds_markdown())


def cmd_design(args) -> None:
    from whatmatters.design import expand, write_design_tsv

    study = _json_arg(args.study)
    write_design_tsv(study, expand(study), args.out)


def cmd_prepare(args) -> None:
    from whatmatters.data import prepare
    from whatmatters.io import provenance

    spec = _json_arg(args.spec)
    prepare(spec, args.out, provenance(settings=spec))


def cmd_train(args) -> None:
    from whatmatters.runstore import cannot_retry_path

    marker = cannot_retry_path(args.out)
    if args.attempt > 1 and marker.exists():   # the first attempt met an error a retry cannot fix
        print(f"whatmatters train: error: {marker.read_text(errors='replace').strip()}; not retried: "
              "a retry cannot fix this", file=sys.stderr)
        sys.exit(1)
    marker.unlink(missing_ok=True)
    from whatmatters.errors import PermanentError
    from whatmatters.io import write_text
    from whatmatters.jobs import JobFailed, run_job

    try:
        spec = _json_arg(args.spec)
    except PermanentError as e:
        write_text(marker, str(e))
        raise
    try:
        m = run_job(spec, args.data, args.run_dir, args.out, threads=args.threads,
                    attempt=args.attempt, attempts=args.attempts, allow_missing=args.allow_missing,
                    process_started=PROCESS_STARTED)
    except JobFailed as e:   # exit 1: Snakemake retries the job, or the study stops after its last attempt
        print(f"whatmatters train: error: {e}", file=sys.stderr)
        sys.exit(1)
    if "failed" not in m:
        print(f"{m['dataset']}: trained {m['trained']} runs, reused {m['reused']}; timing {m['timing']}")


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

    spec = _json_arg(args.spec)
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
    summarize.write_summaries(posterior.load(args.posterior), _json_arg(args.spec), args.out_dir, table,
                              missing=missing)


def cmd_plot(args) -> None:
    from whatmatters import plots, posterior

    plots.plot_outcome(posterior.load(args.posterior), _json_arg(args.spec), args.out_dir)


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


def cmd_answer(args) -> None:
    from whatmatters.answer import write_answer

    write_answer(args.analysis_dir, args.plots_dir, args.outcome, args.summary, args.page, args.description)


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
    add("status", cmd_status, "runs done / total per dataset, failures and the time left (while a study runs, or after)",
        ("config", {"nargs": "?", "default": "config.yaml"}), ("--runs-dir", {"default": "results/runs"}))
    add("schema", cmd_schema, "print the JSON schema of a study config (YAML)")
    add("catalog", cmd_catalog, "print every kind's settings as JSON (workflow/whatmatters/catalog.json)")
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
    add("answer", cmd_answer, "the study's answer in words: results/summary.md and the report's first page",
        ("--analysis-dir", req), ("--plots-dir", req),
        ("--outcome", {"action": "append", "required": True, "help": "an outcome to answer for, once per outcome"}),
        ("--summary", {**req, "help": "the Markdown answer (results/summary.md)"}),
        ("--page", {**req, "help": "the report's first page (reStructuredText)"}),
        ("--description", {**req, "help": "the workflow's description, put after the answer on the page"}))
    return p


def main(argv: list[str] | None = None) -> None:
    from whatmatters.errors import WhatmattersError

    args = parser().parse_args(argv)
    try:
        args.fn(args)
    except WhatmattersError as e:
        print(f"whatmatters {args.command}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # What was being written is removed (atomic writes), which frees room for this line.
        print(f"whatmatters {args.command}: error: no space left on device writing {e.filename or 'its output'} "
              f"({e.strerror}); free some space and rerun: finished work is kept", file=sys.stderr, flush=True)
        sys.exit(1)
    if args.command == "train":
        # Skip interpreter teardown (~0.7 s of freeing torch): every file is written and
        # renamed into place already, so nothing is lost.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
