"""Snakemake: Fig. 1, the toy illustration of two crossing robustness curves."""
from robcurves.joblog import log_to

with log_to(snakemake.log[0]) as log:
    from robcurves.figures import plot_toy_crossing

    info = plot_toy_crossing([snakemake.output.pdf, snakemake.output.png], seed=snakemake.params.seed)
    log.info("toy curves cross at eps = %s", info["crossings"])
