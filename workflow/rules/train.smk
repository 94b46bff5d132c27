# One job trains all seeds of a few configs on one dataset (execution.runs_per_job runs),
# so Python/torch start-up is paid once per job, not per run. Each finished run is stored
# on its own (results/runs/{dataset}/{config}/{seed}.json) and reused when the job reruns
# with its key unchanged: editing a level retrains only the runs that use it.
rule train:
    input:
        "results/data/{dataset}.pt",
    output:
        "results/runs/{dataset}/jobs/{job}.json",
    log:
        "results/logs/train/{dataset}/{job}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{job}.tsv"
    retries: 1
    conda:
        "../../envs/train.yaml"
    threads: STUDY["execution"]["threads"]
    resources:
        gpu=1 if STUDY["execution"]["device"] == "cuda" else 0,
    params:
        spec=train_spec,
        run_dir="results/runs/{dataset}",
    shell:
        "python -m whatmatters train --spec {params.spec:q} --data {input} --run-dir {params.run_dir}"
        " --out {output} --threads {threads} > {log} 2>&1"
