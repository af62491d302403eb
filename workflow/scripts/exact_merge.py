"""Snakemake: gather exact shards into one JSON per (data set, model, norm)."""
from robcurves.joblog import log_to

with log_to(snakemake.log[0]) as log:
    from robcurves.exact.stage import merge_exact

    merge_exact(list(snakemake.input.shards), snakemake.output[0], n_points=snakemake.params.n_points, log=log)
