# Data-set scale (Table 2, Figure 5): exact nearest inter-/intra-class distances per point.
#
# Config (the `scale:` section; the schema gives the defaults, config/config.yaml documents them):
#   scale:
#     datasets: [digits, ...]   # prepared data sets
#     split: test               # which split's points
#     min_distance: 1.0e-4      # nearest distances below this are dropped (and counted)
#     intra: true               # overlay intra-class CDFs in Figure 5
#     thresholds: {linf: [0.1, 0.3, 0.0313725], l2: [], l1: []}
#     gpu: 0                    # GPUs to request per distance job (SLURM)

from robcurves.norms import NORMS as _ALL_NORMS

SCALE = config["scale"]


rule nearest_distances:
    input:
        paths.fill(paths.DATA, split=SCALE["split"]),
    output:
        paths.DISTANCES,
    params:
        norms=list(_ALL_NORMS),
    log:
        paths.log("nearest_distances"),
    benchmark:
        paths.benchmark("nearest_distances")
    threads: 8
    resources:
        # the float32 points, two int16 copies and per-thread tiles; the .npz is compressed
        mem_mb=lambda wc, input: int(2000 + 8 * input.size_mb),
        # minutes; MNIST takes well under one, Tiny-ImageNet hours on a CPU
        runtime=lambda wc, input: int(60 + input.size_mb / 5),
        gpu=SCALE["gpu"],  # with a GPU visible the tiles run on it (TensorFlow)
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/distances.py"


rule table2:
    input:
        targets.distance_files(config),
    output:
        csv=report(
            paths.table(paths.TABLE2, "csv"),
            caption="../workflow/report/table2.rst",
            category="Tables",
            subcategory="Table 2: data-set scale",
            labels={"table": paths.TABLE2, "format": "CSV"},
        ),
        md=paths.table(paths.TABLE2, "md"),
        tex=paths.table(paths.TABLE2, "tex"),
    params:
        datasets=SCALE["datasets"],
        min_distance=SCALE["min_distance"],
    log:
        paths.log("table2"),
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
        targets.distance_files(config),
    output:
        pdf=report(
            paths.figure(paths.SCALE_FIGURE, "pdf"),
            caption="../workflow/report/fig5.rst",
            category="Figures",
            subcategory="Fig. 5: data-set scale",
            labels={"figure": paths.SCALE_FIGURE, "format": "PDF"},
        ),
        png=report(
            paths.figure(paths.SCALE_FIGURE, "png"),
            caption="../workflow/report/fig5.rst",
            category="Figures",
            subcategory="Fig. 5: data-set scale",
            labels={"figure": paths.SCALE_FIGURE, "format": "PNG"},
        ),
    params:
        datasets=SCALE["datasets"],
        min_distance=SCALE["min_distance"],
        intra=SCALE["intra"],
        thresholds=SCALE["thresholds"],
    log:
        paths.log("fig5"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/fig5.py"
