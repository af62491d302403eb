# Figures and tables: robustness curves of several models (one panel per norm), the
# gallery of their minimal adversarial examples, Fig. 1, Table 1 and the crossings table. Each output is marked for `snakemake --report`, with a
# caption (workflow/report/) that says what it shows and which config entry made it.

CAPTIONS = "../workflow/report"


# The report's start page: what the workflow does and the whole validated config.
report: "../workflow/report/workflow.rst"


rule figure_robustness_curves:
    input:
        lambda wc: figure_curve_files(wc.name),
    output:
        pdf=report(
            "results/figures/curves_{name}.pdf",
            caption=f"{CAPTIONS}/robustness_curves.rst",
            category="Figures",
            subcategory="Robustness curves",
            labels={"figure": "{name}", "format": "PDF"},
        ),
        png=report(
            "results/figures/curves_{name}.png",
            caption=f"{CAPTIONS}/robustness_curves.rst",
            category="Figures",
            subcategory="Robustness curves",
            labels={"figure": "{name}", "format": "PNG"},
        ),
    params:
        spec=lambda wc: config["figures"]["robustness_curves"][wc.name],
    log:
        "logs/figures/curves_{name}.log",
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
        robustness_figure_files(),


rule figure_gallery:
    input:
        lambda wc: gallery_input_files(wc.name),
    output:
        pdf=report(
            "results/figures/gallery_{name}.pdf",
            caption=f"{CAPTIONS}/gallery.rst",
            category="Figures",
            subcategory="Gallery of minimal adversarial examples",
            labels={"figure": "gallery_{name}", "format": "PDF"},
        ),
        png=report(
            "results/figures/gallery_{name}.png",
            caption=f"{CAPTIONS}/gallery.rst",
            category="Figures",
            subcategory="Gallery of minimal adversarial examples",
            labels={"figure": "gallery_{name}", "format": "PNG"},
        ),
    params:
        spec=lambda wc: config["figures"]["robustness_curves"][wc.name],
        entries=lambda wc: gallery_entries(wc.name),
        quantiles=[0.1, 0.5, 0.9],
    log:
        "logs/figures/gallery_{name}.log",
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
            "results/figures/fig1_toy.pdf",
            caption=f"{CAPTIONS}/fig1_toy.rst",
            category="Figures",
            subcategory="Fig. 1: toy illustration",
            labels={"figure": "fig1_toy", "format": "PDF"},
        ),
        png=report(
            "results/figures/fig1_toy.png",
            caption=f"{CAPTIONS}/fig1_toy.rst",
            category="Figures",
            subcategory="Fig. 1: toy illustration",
            labels={"figure": "fig1_toy", "format": "PNG"},
        ),
    params:
        seed=config["seed"],
    log:
        "logs/figures/fig1_toy.log",
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
        curves=all_curve_files(),
        exact=exact_merged_files(config),  # a certified column where exact results exist
    output:
        csv=report(
            "results/tables/table1_robust_error.csv",
            caption=f"{CAPTIONS}/table1.rst",
            category="Tables",
            subcategory="Table 1: point-wise robust error",
            labels={"table": "table1_robust_error", "format": "CSV"},
        ),
        md="results/tables/table1_robust_error.md",
        tex="results/tables/table1_robust_error.tex",
    params:
        spec=config["tables"]["robust_error"],
    log:
        "logs/tables/table1.log",
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
        all_curve_files(),
    output:
        csv=report(
            "results/tables/crossings.csv",
            caption=f"{CAPTIONS}/crossings.rst",
            category="Tables",
            subcategory="Crossings of robustness curves",
            labels={"table": "crossings", "format": "CSV"},
        ),
        md="results/tables/crossings.md",
        tex="results/tables/crossings.tex",
    params:
        spec=config["tables"]["crossings"],
        datasets={m: s["dataset"] for m, s in config["models"].items()},
    log:
        "logs/tables/crossings.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/crossings.py"
