"""Snakemake: where the robustness curves of two models cross, per data set and norm."""
from dataclasses import asdict
from pathlib import Path

from robcurves.jobs import log_to

with log_to(snakemake.log[0]) as log:
    from robcurves.curves import RobustnessCurve
    from robcurves.tables import crossings_table, write_table

    spec = dict(snakemake.params.spec)
    curves = [RobustnessCurve.load(p) for p in snakemake.input]
    rows = []
    for ds in sorted({c.config.get("dataset", "") for c in curves}):
        sel = [c for c in curves if c.config.get("dataset", "") == ds]
        for cr in crossings_table(sel, alpha=spec["alpha"]):
            rows.append({"dataset": ds, **asdict(cr)})
    log.info("%d crossings, %d significant", len(rows), sum(r["significant"] for r in rows))
    stem = str(Path(snakemake.output[0]).with_suffix(""))
    write_table(rows, stem, caption="Crossings of robustness curves (eps in the norm's units)")
