"""Snakemake: Table 1, point-wise robust error with 95% intervals, read exactly off the curves;
certified intervals from the exact stage where it ran for that model and norm."""
from dataclasses import asdict
from pathlib import Path

from robcurves.joblog import log_to

with log_to(snakemake.log[0]):
    from robcurves.curves import RobustnessCurve
    from robcurves.exact.records import read_merged_json
    from robcurves.tables import add_certified_columns, robust_error_table
    from robcurves.tablewriter import write_table

    spec = dict(snakemake.params.spec)
    curves = [RobustnessCurve.load(p) for p in snakemake.input.curves]
    exact = {}
    for p in snakemake.input.exact:  # results/exact/{dataset}/{model}/{norm}.json
        data = read_merged_json(p)
        model = Path(p).parent.name
        exact[(model, data["norm"])] = ([pt["lower"] for pt in data["points"]], [pt["upper"] for pt in data["points"]])
    rows = []
    for c in curves:
        name = c.config.get("model_name", c.label)
        table = robust_error_table([c], spec["thresholds"], alpha=spec["alpha"])
        if (name, c.norm) in exact:
            add_certified_columns(table, {(c.label, c.norm): exact[(name, c.norm)]})
        for r in table:
            rows.append({"dataset": c.config.get("dataset", ""), "model": c.config.get("model_name", c.label),
                         **{k: v for k, v in asdict(r).items() if k != "model"}})
    stem = str(Path(snakemake.output[0]).with_suffix(""))
    write_table(rows, stem, caption=f"Robust error R(eps) with {100 * (1 - spec['alpha']):.0f}% Clopper-Pearson intervals; "
                "certified_low/high: certain bounds of the true R(eps) on the first certified_n points, from the "
                "exact stage's verified upper and certified lower bounds")
