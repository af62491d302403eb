"""Snakemake: the gallery of minimal adversarial examples of one figure entry's models."""
from robcurves.joblog import log_to

with log_to(snakemake.log[0]) as log:
    from robcurves.gallery import gallery_figure

    spec = dict(snakemake.params.spec)
    title = spec.get("title", snakemake.wildcards.name)
    drawn = gallery_figure([dict(e) for e in snakemake.params.entries], [snakemake.output.pdf, snakemake.output.png],
                           title=f"{title}: minimal adversarial examples", quantiles=list(snakemake.params.quantiles))
    for e in drawn["examples"]:
        log.info("%s", e)
