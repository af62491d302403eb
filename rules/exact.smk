# Exact minimal perturbations (MILP), one job per (data set, model, norm, shard), merged per
# norm, and the figure "exact vs. approximate robustness curves". Reads the `exact:` config
# section; the attack shards of the same (data set, model, norm), where the config runs that
# norm, warm-start every point. Files: robcurves.targets; job helpers: robcurves.exact.stage.

from robcurves.exact.stage import exact_runtime_minutes, exact_tolerance


rule exact_shard:
    input:
        model=paths.MODEL,
        sidecar=paths.MODEL_SIDECAR,
        data=paths.fill(paths.DATA, split="test"),
        attacks=lambda wc: targets.exact_attack_files(config, wc.dataset, wc.model, wc.norm),
    output:
        paths.EXACT_SHARD,
    params:
        exact=config["exact"],
        n_points=config["exact"]["n_points"],
        julia_project=str(Path(workflow.basedir) / "workflow" / "julia"),
    log:
        paths.log("exact_shard"),
    benchmark:
        paths.benchmark("exact_shard")
    threads: config["exact"]["threads"]
    resources:
        mem_mb=4000,
        runtime=exact_runtime_minutes(config),
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/exact_shard.py"


rule exact_merge:
    input:
        shards=lambda wc: targets.exact_shard_files(config, wc.dataset, wc.model, wc.norm),
    output:
        paths.EXACT_MERGED,
    params:
        n_points=config["exact"]["n_points"],
    log:
        paths.log("exact_merge"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/exact_merge.py"


rule exact_figure:
    input:
        targets.exact_merged_files(config),
    output:
        pdf=report(
            paths.figure(paths.EXACT_FIGURE, "pdf"),
            caption="../workflow/report/exact_vs_approx.rst",
            category="Figures",
            subcategory="Exact vs. approximate",
            labels={"figure": paths.EXACT_FIGURE, "format": "PDF"},
        ),
        png=report(
            paths.figure(paths.EXACT_FIGURE, "png"),
            caption="../workflow/report/exact_vs_approx.rst",
            category="Figures",
            subcategory="Exact vs. approximate",
            labels={"figure": paths.EXACT_FIGURE, "format": "PNG"},
        ),
        stats=report(
            paths.table(paths.EXACT_GAPS, "csv"),
            caption="../workflow/report/exact_vs_approx.rst",
            category="Tables",
            subcategory="Exact vs. approximate: gap statistics",
            labels={"table": paths.EXACT_GAPS, "format": "CSV"},
        ),
    params:
        labels=targets.exact_labels(config),
        tolerance=exact_tolerance(config),
    log:
        paths.log("exact_figure"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/exact_figure.py"


rule all_exact:
    input:
        targets.exact_merged_files(config),
