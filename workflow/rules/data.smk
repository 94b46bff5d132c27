rule design:
    output:
        "results/design/runs.tsv",
    params:
        study=json.dumps(STUDY),
    log:
        "results/logs/design.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    shell:
        "{WHATMATTERS} design --study {params.study:q} --out {output} > {log} 2>&1"


rule prepare_data:
    output:
        "results/data/{dataset}.pt",
    params:
        spec=dataset_spec,
    log:
        "results/logs/prepare_data/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "{WHATMATTERS} prepare --spec {params.spec:q} --out {output} > {log} 2>&1"
