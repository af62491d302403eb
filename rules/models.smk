# Models: train one on a prepared data set, or convert Croce et al.'s .mat file.


def _model_inputs(wildcards):
    spec = model_spec(wildcards)
    if spec["source"] == "convert":
        return {"mat": mat_input(spec["path"]), "test": f"results/data/{wildcards.dataset}/test.npz"}
    return {
        "train": f"results/data/{wildcards.dataset}/train.npz",
        "test": f"results/data/{wildcards.dataset}/test.npz",
    }


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
        "benchmarks/runs/models/{dataset}/{model}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    script:
        "../workflow/scripts/build_model.py"
