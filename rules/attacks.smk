# Minimal adversarial perturbations, one job per (data set, model, norm, shard).


rule attack_shard:
    input:
        model=paths.MODEL,
        sidecar=paths.MODEL_SIDECAR,
        data=paths.fill(paths.DATA, split="test"),
    output:
        paths.ATTACK_SHARD,
    params:
        attack=lambda wc: attack_params(wc.norm),
        n_points=config["attacks"]["n_points"],
    log:
        paths.log("attack_shard"),
    benchmark:
        paths.benchmark("attack_shard")
    threads: config["attacks"]["threads"]
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=config["attacks"]["gpu"],
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/attack_shard.py"
