"""Snakemake: where the robustness curves of two models cross, per data set and norm (family-wise)."""
from dataclasses import asdict
from pathlib import Path

from robcurves.joblog import log_to

with log_to(snakemake.log[0]) as log:
    from robcurves.curves import RobustnessCurve
    from robcurves.tables import crossings_caption, crossings_table
    from robcurves.tablewriter import write_table

    spec = dict(snakemake.params.spec)
    curves = [RobustnessCurve.load(p) for p in snakemake.input]
    rows = [{"dataset": cr.dataset, **{k: v for k, v in asdict(cr).items() if k != "dataset"}}
            for cr in crossings_table(curves, alpha=spec["alpha"])]
    log.info("%d crossings, %d significant (family-wise alpha %g over %d curves)", len(rows),
             sum(r["significant"] for r in rows), spec["alpha"], len(curves))
    stem = str(Path(snakemake.output[0]).with_suffix(""))
    write_table(rows, stem, caption=crossings_caption(spec["alpha"], len(curves)))
