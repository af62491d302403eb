"""Snakemake: the figure "exact vs. approximate robustness curves" and its gap statistics."""
from robcurves.joblog import log_to

with log_to(snakemake.log[0]) as log:
    from robcurves.atomic import write_text
    from robcurves.exact.figure import format_gap_statistics, plot_exact_vs_approx

    stats = plot_exact_vs_approx(list(snakemake.input), [snakemake.output.pdf, snakemake.output.png],
                                 labels=list(snakemake.params.labels))
    table = format_gap_statistics(stats)
    print(table)
    log.info("gap statistics:\n%s", table)
    write_text(snakemake.output.stats, table + "\n")
