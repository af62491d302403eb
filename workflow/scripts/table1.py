"""Snakemake: Table 1, point-wise robust error with 95% intervals, read exactly off the curves."""
from dataclasses import asdict
from pathlib import Path

from robcurves.joblog import log_to

with log_to(snakemake.log[0]):
    from robcurves.curves import RobustnessCurve
    from robcurves.tables import robust_error_table
    from robcurves.tablewriter import write_table

    spec = dict(snakemake.params.spec)
    curves = [RobustnessCurve.load(p) for p in snakemake.input]
    rows = []
    for c, path in zip(curves, snakemake.input):
        for r in robust_error_table([c], spec["thresholds"], alpha=spec["alpha"]):
            rows.append({"dataset": c.config.get("dataset", ""), "model": c.config.get("model_name", c.label),
                         **{k: v for k, v in asdict(r).items() if k != "model"}})
    stem = str(Path(snakemake.output[0]).with_suffix(""))
    write_table(rows, stem, caption=f"Robust error R(eps) with {100 * (1 - spec['alpha']):.0f}% Clopper-Pearson intervals")
