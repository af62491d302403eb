# Gather the shards of one (data set, model, norm) into a robustness curve.


rule merge_curve:
    input:
        shards=lambda wc: targets.attack_shard_files(config, wc.dataset, wc.model, wc.norm),
        data=paths.fill(paths.DATA, split="test"),
        # warm starts (attacks.warm_start): the model, to re-verify every other witness on it,
        # the other norms' attack shards and, if asked, the exact stage's shards
        model=paths.MODEL,
        sidecar=paths.MODEL_SIDECAR,
        warm=lambda wc: targets.warm_start_input_files(config, wc.dataset, wc.model, wc.norm),
    output:
        paths.CURVE,
    params:
        n_points=config["attacks"]["n_points"],
        label=lambda wc: config["models"][wc.model].get("label", wc.model),
        model=lambda wc: config["models"][wc.model],
        attack=lambda wc: attack_params(wc.norm),
        warm=lambda wc: targets.warm_start_files(config, wc.dataset, wc.model, wc.norm),
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
