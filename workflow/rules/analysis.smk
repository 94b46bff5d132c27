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
        importance=report(
            "results/analysis/{outcome}/importance.csv",
            caption="../report/importance_table.rst",
            category="{outcome}",
            subcategory="Tables",
        ),
        ranks="results/analysis/{outcome}/ranks.csv",
        estimands=report(
            "results/analysis/{outcome}/estimands.csv",
            caption="../report/estimands_table.rst",
            category="{outcome}",
            subcategory="Tables",
        ),
        agreement="results/analysis/{outcome}/estimand_agreement.csv",
        classical=report(
            "results/analysis/{outcome}/classical.csv",
            caption="../report/classical.rst",
            category="{outcome}",
            subcategory="Tables",
        ),
        hypotheses_table=report(
            "results/analysis/{outcome}/hypotheses.csv",
            caption="../report/hypotheses.rst",
            category="{outcome}",
            subcategory="Tables",
        ),
        hypotheses=report(
            "results/analysis/{outcome}/hypotheses.json",
            caption="../report/hypotheses.rst",
            category="{outcome}",
            subcategory="Tables",
        ),
        diagnostics="results/analysis/{outcome}/diagnostics.json",
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
        ranks=report(
            "results/plots/{outcome}/ranks.png",
            caption="../report/ranks.rst",
            category="{outcome}",
            subcategory="Importance ranks",
        ),
        importance=report(
            "results/plots/{outcome}/importance.png",
            caption="../report/importance.rst",
            category="{outcome}",
            subcategory="Importance",
        ),
        level_effects=report(
            "results/plots/{outcome}/level_effects.png",
            caption="../report/level_effects.rst",
            category="{outcome}",
            subcategory="Level effects",
        ),
        ppc=report(
            "results/plots/{outcome}/ppc.png",
            caption="../report/ppc.rst",
            category="{outcome}",
            subcategory="Posterior predictive check",
        ),
        estimands=report(
            "results/plots/{outcome}/estimands.png",
            caption="../report/estimands.rst",
            category="{outcome}",
            subcategory="Importance",
        ),
        diagnostics=report(
            "results/plots/{outcome}/diagnostics.png",
            caption="../report/diagnostics.rst",
            category="{outcome}",
            subcategory="Sampling diagnostics",
        ),
        svg=multiext(
            "results/plots/{outcome}/",
            "ranks.svg",
            "importance.svg",
            "level_effects.svg",
        ),
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
