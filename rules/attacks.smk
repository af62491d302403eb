# Minimal adversarial perturbations, one job per (data set, model, norm, shard).


def attack_params(norm):
    """The norm's attack settings over the attacks-wide ones (strength, backend, ...)."""
    top = {k: config["attacks"][k] for k in ("strength", "backend", "deterministic", "masking_check")
           if k in config["attacks"]}
    return {**top, **config["attacks"]["norms"][norm]}


rule attack_shard:
    input:
        model="results/models/{dataset}/{model}/model.keras",
        sidecar="results/models/{dataset}/{model}/model.json",
        data="results/data/{dataset}/test.npz",
    output:
        "results/attacks/{dataset}/{model}/{norm}/shard{shard}of{nshards}.npz",
    params:
        attack=lambda wc: attack_params(wc.norm),
        n_points=config["attacks"]["n_points"],
    log:
        "logs/attacks/{dataset}/{model}/{norm}/shard{shard}of{nshards}.log",
    benchmark:
        "logs/benchmarks/attacks/{dataset}/{model}/{norm}/shard{shard}of{nshards}.tsv"
    threads: config["attacks"]["threads"]
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=config["attacks"]["gpu"],
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/attack_shard.py"
