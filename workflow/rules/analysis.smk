rule aggregate:
    input:
        design="results/design/runs.tsv",
        jobs=job_manifests(),
    output:
        parquet="results/table/runs.parquet",
        csv=report(
            "results/table/runs.csv",
            caption="../report/runs.rst",
            category="Run table",
        ),
    log:
        "results/logs/aggregate.log",
    localrule: True
    conda:
        "../../envs/aggregate.yaml"
    params:
        allow_missing="--allow-missing" if STUDY["analysis"]["allow_missing"] else "",
    shell:
        "python -m whatmatters aggregate --design {input.design} --runs-dir results/runs"
        " --out {output.parquet} {params.allow_missing} > {log} 2>&1"


rule fit:
    input:
        "results/table/runs.parquet",
    output:
        "results/analysis/{outcome}/posterior.nc",
    log:
        "results/logs/fit/{outcome}.log",
    benchmark:
        "results/benchmarks/fit/{outcome}.tsv"
    conda:
        "../../envs/fit.yaml"
    threads: STUDY["analysis"]["chains"]  # one chain per core; Snakemake caps it at --cores
    params:
        spec=fit_spec,
    shell:
        "python -m whatmatters fit --table {input} --spec {params.spec:q} --out {output} > {log} 2>&1"


rule summarize:
    input:
        posterior="results/analysis/{outcome}/posterior.nc",
        table="results/table/runs.parquet",
    output:
        **outcome_files("results/analysis/{outcome}", SUMMARIES, REPORTED_SUMMARIES),
    log:
        "results/logs/summarize/{outcome}.log",
    localrule: True
    conda:
        "../../envs/fit.yaml"
    params:
        spec=fit_spec,
    shell:
        "python -m whatmatters summarize --posterior {input.posterior} --table {input.table}"
        " --spec {params.spec:q} --out-dir results/analysis/{wildcards.outcome} > {log} 2>&1"


rule plot:
    input:
        "results/analysis/{outcome}/posterior.nc",
    output:
        **outcome_files("results/plots/{outcome}", FIGURES, REPORTED_FIGURES),
    log:
        "results/logs/plot/{outcome}.log",
    localrule: True
    conda:
        "../../envs/plot.yaml"
    params:
        spec=fit_spec,
    shell:
        "python -m whatmatters plot --posterior {input} --spec {params.spec:q}"
        " --out-dir results/plots/{wildcards.outcome} > {log} 2>&1"


rule compare_outcomes:
    input:
        [f"results/analysis/{o}/posterior.nc" for o in OUTCOMES],
    output:
        ranks=report(
            "results/analysis/outcomes.csv",
            caption="../report/outcomes_table.rst",
            category="All outcomes",
        ),
        contrasts=report(
            "results/analysis/outcome_contrasts.csv",
            caption="../report/outcomes_table.rst",
            category="All outcomes",
        ),
        plot=report(
            "results/plots/outcomes.png",
            caption="../report/outcomes.rst",
            category="All outcomes",
        ),
    log:
        "results/logs/compare_outcomes.log",
    localrule: True
    conda:
        "../../envs/plot.yaml"
    params:
        posteriors=lambda wildcards, input: " ".join(
            f"--posterior {o}={p}" for o, p in zip(OUTCOMES, input)
        ),
    shell:
        "python -m whatmatters compare-outcomes {params.posteriors}"
        " --out-csv {output.ranks} --contrasts-csv {output.contrasts} --plot {output.plot} > {log} 2>&1"


rule answer:
    input:
        summaries=[
            f"results/analysis/{o}/{SUMMARIES[key]}"
            for o in OUTCOMES
            for key in ("ranks", "hypotheses_table", "diagnostics")
        ],
        figures=[
            f"results/plots/{o}/{FIGURES[key]}"
            for o in OUTCOMES
            for key in ("ranks", "diagnostics")
        ],
        description=DESCRIPTION,
    output:
        summary="results/summary.md",
        page=FIRST_PAGE,
    log:
        "results/logs/answer.log",
    localrule: True
    conda:
        "../../envs/aggregate.yaml"
    params:
        outcomes=" ".join(f"--outcome {o}" for o in OUTCOMES),
    shell:
        "python -m whatmatters answer --analysis-dir results/analysis --plots-dir results/plots {params.outcomes}"
        " --description {input.description:q} --summary {output.summary} --page {output.page} > {log} 2>&1"
