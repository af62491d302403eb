# Data: bundled sets are built directly; published sets are downloaded, checked, converted.


def _dataset_spec(wildcards):
    spec = config["datasets"].get(wildcards.dataset)
    if spec is None:
        raise WorkflowError(f"data set {wildcards.dataset!r} is not in the config")
    return spec


def _raw_manifest(wildcards):
    if _dataset_spec(wildcards)["source"] == "download":
        return [f"results/raw/{wildcards.dataset}/manifest.json"]
    return []


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
    script:
        "../workflow/scripts/prepare_dataset.py"
