# Data: bundled sets are built directly; published sets are downloaded, checked, converted.


rule download_dataset:
    output:
        "results/raw/{dataset}/manifest.json",
    params:
        name=lambda wc: _dataset_spec(wc).get("download", wc.dataset),
        spec=_dataset_spec,
    log:
        "logs/download/{dataset}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=120,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/download_dataset.py"


rule prepare_dataset:
    input:
        _raw_manifest,
    output:
        train="results/data/{dataset}/train.npz",
        test="results/data/{dataset}/test.npz",
    params:
        spec=_dataset_spec,
    log:
        "logs/data/{dataset}.log",
    threads: 1
    resources:
        mem_mb=lambda wc: _dataset_spec(wc)["mem_mb"],
        runtime=180,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/prepare_dataset.py"
