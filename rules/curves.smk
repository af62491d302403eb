# Gather the shards of one (data set, model, norm) into a robustness curve.


rule merge_curve:
    input:
        shards=lambda wc: targets.attack_shard_files(config, wc.dataset, wc.model, wc.norm),
        data=paths.fill(paths.DATA, split="test"),
    output:
        paths.CURVE,
    params:
        n_points=config["attacks"]["n_points"],
        label=lambda wc: config["models"][wc.model].get("label", wc.model),
        model=lambda wc: config["models"][wc.model],
        attack=lambda wc: attack_params(wc.norm),
    log:
        paths.log("merge_curve"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/merge_curve.py"
