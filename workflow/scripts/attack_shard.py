"""Snakemake: minimal adversarial perturbations for one shard of the test points."""
from robcurves.joblog import log_to, snakemake_threads

from robcurves import backend

# The Keras backend is fixed when Keras is first imported: choose it before anything does.
backend.select(snakemake.params.attack["backend"])  # the workflow fills every default

with log_to(snakemake.log[0]) as log:
    snakemake_threads(snakemake.threads)
    from robcurves.stages import attack_shard

    attack_shard(
        model_path=snakemake.input.model,
        data_path=snakemake.input.data,
        out_path=snakemake.output[0],
        norm=snakemake.wildcards.norm,
        shard=int(snakemake.wildcards.shard),
        n_shards=int(snakemake.wildcards.nshards),
        n_points=snakemake.params.n_points,
        attack=dict(snakemake.params.attack),
        log=log,
    )
