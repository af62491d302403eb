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
