# Exact minimal perturbations (MILP), one job per (data set, model, norm, shard), merged per
# norm, and the figure "exact vs. approximate robustness curves". Reads the `exact:` config
# section; the attack shards of the same (data set, model, norm), where the config runs that
# norm, warm-start every point. Helpers: robcurves.exact.pipeline.

from robcurves.exact.pipeline import (
    exact_attack_files,
    exact_figure_files,
    exact_labels,
    exact_merged_files,
    exact_runtime_minutes,
    exact_section,
    exact_shard_files,
    exact_tolerance,
)


rule exact_shard:
    input:
        unpack(lambda wc: model_files(wc.dataset, wc.model)),
        data="results/data/{dataset}/test.npz",
        attacks=lambda wc: exact_attack_files(config, wc.dataset, wc.model, wc.norm),
    output:
        "results/exact/{dataset}/{model}/{norm}/shard{shard}of{nshards}.npz",
    params:
        exact=exact_section(config),
        n_points=int(exact_section(config).get("n_points", 20)),
        julia_project=str(Path(workflow.basedir) / "workflow" / "julia"),
    log:
        "logs/exact/{dataset}/{model}/{norm}/shard{shard}of{nshards}.log",
    benchmark:
        "logs/benchmarks/exact/{dataset}/{model}/{norm}/shard{shard}of{nshards}.tsv"
    threads: int(exact_section(config).get("threads", 1))
    resources:
        mem_mb=4000,
        runtime=exact_runtime_minutes(config),
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/exact_shard.py"


rule exact_merge:
    input:
        shards=lambda wc: exact_shard_files(config, wc.dataset, wc.model, wc.norm),
    output:
        "results/exact/{dataset}/{model}/{norm}.json",
    params:
        n_points=int(exact_section(config).get("n_points", 20)),
    log:
        "logs/exact/{dataset}/{model}/{norm}.merge.log",
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
        exact_merged_files(config),
    output:
        pdf=report(
            "results/figures/exact_vs_approx.pdf",
            caption="../workflow/report/exact_vs_approx.rst",
            category="Figures",
            subcategory="Exact vs. approximate",
            labels={"figure": "exact_vs_approx", "format": "PDF"},
        ),
        png=report(
            "results/figures/exact_vs_approx.png",
            caption="../workflow/report/exact_vs_approx.rst",
            category="Figures",
            subcategory="Exact vs. approximate",
            labels={"figure": "exact_vs_approx", "format": "PNG"},
        ),
        stats=report(
            "results/tables/exact_gap_statistics.csv",
            caption="../workflow/report/exact_vs_approx.rst",
            category="Tables",
            subcategory="Exact vs. approximate: gap statistics",
            labels={"table": "exact_gap_statistics", "format": "CSV"},
        ),
    params:
        labels=exact_labels(config),
        tolerance=exact_tolerance(config),
    log:
        "logs/figures/exact_vs_approx.log",
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
        exact_merged_files(config),
