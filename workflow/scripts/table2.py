"""Snakemake: Table 2 (data-set scale) as CSV, Markdown and LaTeX."""
from robcurves.joblog import log_to

with log_to(snakemake.log[0]) as log:
    from robcurves.scale import load_results, write_table2

    results = load_results(dict(zip(snakemake.params.datasets, snakemake.input)))
    rows = write_table2(results, *snakemake.output, min_distance=snakemake.params.min_distance)
    for r in rows:
        log.info("%s", r)
