# Data: bundled sets are built directly; published sets are downloaded, checked, converted.


rule download_dataset:
    output:
        paths.RAW_MANIFEST,
    params:
        name=lambda wc: _dataset_spec(wc).get("download", wc.dataset),
        spec=_dataset_spec,
    log:
        paths.log("download_dataset"),
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
        train=paths.fill(paths.DATA, split="train"),
        test=paths.fill(paths.DATA, split="test"),
    params:
        spec=_dataset_spec,
    log:
        paths.log("prepare_dataset"),
    threads: 1
    resources:
        mem_mb=lambda wc: _dataset_spec(wc)["mem_mb"],
        runtime=180,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/prepare_dataset.py"
