# The study, resolved, in a file for the design step (a large study does not fit on a command line).
rule study_spec:
    output:
        "results/design/study.json",
    localrule: True
    params:
        study=json.dumps(STUDY),
    run:
        write_text(output[0], params.study)


rule design:
    input:
        "results/design/study.json",
    output:
        "results/design/runs.tsv",
    log:
        "results/logs/design.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m whatmatters design --study @{input} --out {output} > {log} 2>&1"


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
