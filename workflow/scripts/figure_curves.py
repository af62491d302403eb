"""Snakemake: a figure of robustness curves, one panel per norm."""
from robcurves.joblog import log_to

with log_to(snakemake.log[0]):
    from robcurves.curves import RobustnessCurve
    from robcurves.figures import plot_robustness_curves

    spec = dict(snakemake.params.spec)
    curves = [RobustnessCurve.load(p) for p in snakemake.input]
    plot_robustness_curves(curves, [snakemake.output.pdf, snakemake.output.png],
                           title=spec.get("title", ""), thresholds=spec.get("thresholds"))
