rule design:
    output:
        "results/design/runs.tsv",
    log:
        "results/logs/design.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        study=json.dumps(STUDY),
    shell:
        "python -m whatmatters design --study {params.study:q} --out {output} > {log} 2>&1"


rule prepare_data:
    output:
        "results/data/{dataset}.pt",
    log:
        "results/logs/prepare_data/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    params:
        spec=dataset_spec,
    shell:
        "python -m whatmatters prepare --spec {params.spec:q} --out {output} > {log} 2>&1"
