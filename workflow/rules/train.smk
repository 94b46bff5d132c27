# One job trains all seeds of a few configs on one dataset (execution.runs_per_job runs),
# so Python/torch start-up is paid once per job, not per run. Each finished run is stored
# on its own (results/runs/{dataset}/{config}/{seed}.json) and reused when the job reruns
# with its key unchanged: editing a level retrains only the runs that use it.
# A job that fails is retried once; if its last attempt fails too, it names the runs left
# without a record and fails, or, with analysis.allow_missing, records them as missing.
TRAIN_ATTEMPTS = 2


# A job's settings reach it in a file, not on its command line (a job of hundreds of configs
# has more settings than a command line holds). Written here, in Snakemake's process: when
# they change (params), the file is rewritten and the job reruns, reusing its unchanged runs.
rule job_spec:
    output:
        "results/specs/{dataset}/{job}.json",
    localrule: True
    params:
        spec=train_spec,
    run:
        write_text(output[0], params.spec)


rule train:
    input:
        data="results/data/{dataset}.pt",
        spec="results/specs/{dataset}/{job}.json",
    output:
        "results/runs/{dataset}/jobs/{job}.json",
    log:
        "results/logs/train/{dataset}/{job}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{job}.tsv"
    retries: TRAIN_ATTEMPTS - 1
    conda:
        "../../envs/train.yaml"
    threads: STUDY["execution"]["threads"]
    resources:
        gpu=1 if STUDY["execution"]["device"] == "cuda" else 0,
        attempt=lambda wildcards, attempt: attempt,  # passed on: the last one may record a failure
    params:
        run_dir="results/runs/{dataset}",
        allow_missing="--allow-missing" if STUDY["analysis"]["allow_missing"] else "",
    shell:
        "python -m whatmatters train --spec @{input.spec} --data {input.data} --run-dir {params.run_dir}"
        " --out {output} --threads {threads} --attempt {resources.attempt} --attempts "
        + str(TRAIN_ATTEMPTS)
        + " {params.allow_missing} > {log} 2>&1"
