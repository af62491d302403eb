# Figures and tables: robustness curves of several models (one panel per norm), the
# gallery of their minimal adversarial examples, Fig. 1, Table 1 and the crossings table. Each output is marked for `snakemake --report`, with a
# caption (workflow/report/) that says what it shows and which config entry made it.

CAPTIONS = "../workflow/report"


# The report's start page: what the workflow does and the whole validated config.
report: "../workflow/report/workflow.rst"


rule figure_robustness_curves:
    input:
        lambda wc: targets.figure_curve_files(config, wc.name),
    output:
        pdf=report(
            paths.figure(paths.CURVES_FIGURE, "pdf"),
            caption=f"{CAPTIONS}/robustness_curves.rst",
            category="Figures",
            subcategory="Robustness curves",
            labels={"figure": "{name}", "format": "PDF"},
        ),
        png=report(
            paths.figure(paths.CURVES_FIGURE, "png"),
            caption=f"{CAPTIONS}/robustness_curves.rst",
            category="Figures",
            subcategory="Robustness curves",
            labels={"figure": "{name}", "format": "PNG"},
        ),
    params:
        spec=lambda wc: config["figures"]["robustness_curves"][wc.name],
    log:
        paths.log("figure_robustness_curves"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/figure_curves.py"


rule curves_figures:
    input:
        targets.robustness_figure_files(config),


rule figure_gallery:
    input:
        lambda wc: targets.gallery_input_files(config, wc.name),
    output:
        pdf=report(
            paths.figure(paths.GALLERY_FIGURE, "pdf"),
            caption=f"{CAPTIONS}/gallery.rst",
            category="Figures",
            subcategory="Gallery of minimal adversarial examples",
            labels={"figure": paths.GALLERY_FIGURE, "format": "PDF"},
        ),
        png=report(
            paths.figure(paths.GALLERY_FIGURE, "png"),
            caption=f"{CAPTIONS}/gallery.rst",
            category="Figures",
            subcategory="Gallery of minimal adversarial examples",
            labels={"figure": paths.GALLERY_FIGURE, "format": "PNG"},
        ),
    params:
        spec=lambda wc: config["figures"]["robustness_curves"][wc.name],
        entries=lambda wc: targets.gallery_entries(config, wc.name),
        quantiles=[0.1, 0.5, 0.9],
    log:
        paths.log("figure_gallery"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/gallery.py"


rule fig1_toy:
    output:
        pdf=report(
            paths.figure(paths.TOY_FIGURE, "pdf"),
            caption=f"{CAPTIONS}/fig1_toy.rst",
            category="Figures",
            subcategory="Fig. 1: toy illustration",
            labels={"figure": paths.TOY_FIGURE, "format": "PDF"},
        ),
        png=report(
            paths.figure(paths.TOY_FIGURE, "png"),
            caption=f"{CAPTIONS}/fig1_toy.rst",
            category="Figures",
            subcategory="Fig. 1: toy illustration",
            labels={"figure": paths.TOY_FIGURE, "format": "PNG"},
        ),
    params:
        seed=config["seed"],
    log:
        paths.log("fig1_toy"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/fig1_toy.py"


rule table1:
    input:
        curves=targets.all_curve_files(config),
        exact=targets.exact_merged_files(config),  # a certified column where exact results exist
    output:
        csv=report(
            paths.table(paths.TABLE1, "csv"),
            caption=f"{CAPTIONS}/table1.rst",
            category="Tables",
            subcategory="Table 1: point-wise robust error",
            labels={"table": paths.TABLE1, "format": "CSV"},
        ),
        md=paths.table(paths.TABLE1, "md"),
        tex=paths.table(paths.TABLE1, "tex"),
    params:
        spec=config["tables"]["robust_error"],
    log:
        paths.log("table1"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/table1.py"


rule crossings:
    input:
        targets.all_curve_files(config),
    output:
        csv=report(
            paths.table(paths.CROSSINGS, "csv"),
            caption=f"{CAPTIONS}/crossings.rst",
            category="Tables",
            subcategory="Crossings of robustness curves",
            labels={"table": paths.CROSSINGS, "format": "CSV"},
        ),
        md=paths.table(paths.CROSSINGS, "md"),
        tex=paths.table(paths.CROSSINGS, "tex"),
    params:
        spec=config["tables"]["crossings"],
        datasets={m: s["dataset"] for m, s in config["models"].items()},
    log:
        paths.log("crossings"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/crossings.py"
