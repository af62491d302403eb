# Data-set scale (Table 2, Figure 5): exact nearest inter-/intra-class distances per point.
#
# Config (all keys optional here; the schema gives the defaults):
#   scale:
#     datasets: [digits, ...]   # prepared data sets (results/data/{dataset}/{split}.npz)
#     split: test               # which split's points
#     min_distance: 1.0e-4      # nearest distances below this are dropped (and counted)
#     intra: true               # overlay intra-class CDFs in Figure 5
#     thresholds: {linf: [0.1, 0.3, 0.0313725], l2: [], l1: []}
#     gpu: 0                    # GPUs to request per distance job (SLURM)


# (helpers as lambdas keep `snakemake --lint` quiet; they could move to rules/common.smk)
_scale = lambda key, default: (config.get("scale") or {}).get(key, default)
SCALE_DISTANCE_FILES = [f"results/distances/{d}.npz" for d in _scale("datasets", [])]


rule nearest_distances:
    input:
        lambda wc: f"results/data/{wc.dataset}/{_scale('split', 'test')}.npz",
    output:
        "results/distances/{dataset}.npz",
    params:
        norms=["linf", "l2", "l1"],
    log:
        "logs/distances/{dataset}.log",
    benchmark:
        "logs/benchmarks/distances/{dataset}.tsv"
    threads: 8
    resources:
        # the float32 points, two int16 copies and per-thread tiles; the .npz is compressed
        mem_mb=lambda wc, input: int(2000 + 8 * input.size_mb),
        # minutes; MNIST takes well under one, Tiny-ImageNet hours on a CPU
        runtime=lambda wc, input: int(60 + input.size_mb / 5),
        gpu=_scale("gpu", 0),  # with a GPU visible the tiles run on it (TensorFlow)
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/distances.py"


rule table2:
    input:
        SCALE_DISTANCE_FILES,
    output:
        csv=report(
            "results/tables/table2.csv",
            caption="../workflow/report/table2.rst",
            category="Tables",
            subcategory="Table 2: data-set scale",
            labels={"table": "table2", "format": "CSV"},
        ),
        md="results/tables/table2.md",
        tex="results/tables/table2.tex",
    params:
        datasets=_scale("datasets", []),
        min_distance=_scale("min_distance", 1.0e-4),
    log:
        "logs/tables/table2.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/table2.py"


rule fig5:
    input:
        SCALE_DISTANCE_FILES,
    output:
        pdf=report(
            "results/figures/fig5_scale.pdf",
            caption="../workflow/report/fig5.rst",
            category="Figures",
            subcategory="Fig. 5: data-set scale",
            labels={"figure": "fig5_scale", "format": "PDF"},
        ),
        png=report(
            "results/figures/fig5_scale.png",
            caption="../workflow/report/fig5.rst",
            category="Figures",
            subcategory="Fig. 5: data-set scale",
            labels={"figure": "fig5_scale", "format": "PNG"},
        ),
    params:
        datasets=_scale("datasets", []),
        min_distance=_scale("min_distance", 1.0e-4),
        intra=_scale("intra", True),
        thresholds=_scale("thresholds", {}),
    log:
        "logs/figures/fig5_scale.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/fig5.py"
