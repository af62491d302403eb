# Figures: robustness curves of several models, one panel per norm.


rule figure_robustness_curves:
    input:
        lambda wc: figure_curve_files(wc.name),
    output:
        pdf="results/figures/curves_{name}.pdf",
        png="results/figures/curves_{name}.png",
    params:
        spec=lambda wc: config["figures"]["robustness_curves"][wc.name],
    log:
        "logs/figures/curves_{name}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow/scripts/figure_curves.py"


rule curves_figures:
    input:
        robustness_figure_files(),


rule fig1_toy:
    output:
        pdf="results/figures/fig1_toy.pdf",
        png="results/figures/fig1_toy.png",
    params:
        seed=config["seed"],
    log:
        "logs/figures/fig1_toy.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow/scripts/fig1_toy.py"


rule table1:
    input:
        all_curve_files(),
    output:
        multiext("results/tables/table1_robust_error", ".csv", ".md", ".tex"),
    params:
        spec=config["tables"]["robust_error"],
    log:
        "logs/tables/table1.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow/scripts/table1.py"


rule crossings:
    input:
        all_curve_files(),
    output:
        multiext("results/tables/crossings", ".csv", ".md", ".tex"),
    params:
        spec=config["tables"]["crossings"],
        datasets={m: s["dataset"] for m, s in config["models"].items()},
    log:
        "logs/tables/crossings.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow/scripts/crossings.py"
