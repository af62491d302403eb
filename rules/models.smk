# Models: train one on a prepared data set, or convert Croce et al.'s .mat file.


rule build_model:
    input:
        unpack(_model_inputs),
    output:
        model="results/models/{dataset}/{model}/model.keras",
        sidecar="results/models/{dataset}/{model}/model.json",
    params:
        spec=model_spec,
    log:
        "logs/models/{dataset}/{model}.log",
    benchmark:
        "logs/benchmarks/models/{dataset}/{model}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/build_model.py"
