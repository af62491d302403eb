"""Snakemake: Figure 5, CDFs of nearest inter-class distances per data set and norm."""
from robcurves.joblog import log_to

with log_to(snakemake.log[0]):
    from robcurves.scale import load_results, plot_fig5

    results = load_results(dict(zip(snakemake.params.datasets, snakemake.input)))
    plot_fig5(results, [snakemake.output.pdf, snakemake.output.png],
              min_distance=snakemake.params.min_distance, intra=snakemake.params.intra,
              thresholds=dict(snakemake.params.thresholds or {}))
