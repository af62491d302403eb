"""Snakemake: gather attack shards into one robustness curve."""
from robcurves.joblog import log_to

with log_to(snakemake.log[0]) as log:
    from robcurves.stages import merge_curve

    merge_curve(
        shard_paths=list(snakemake.input.shards),
        data_path=snakemake.input.data,
        out_path=snakemake.output[0],
        n_points=snakemake.params.n_points,
        label=snakemake.params.label,
        provenance={"model": dict(snakemake.params.model), "attack": dict(snakemake.params.attack),
                    "model_name": snakemake.wildcards.model, "dataset": snakemake.wildcards.dataset},
        attack=dict(snakemake.params.attack),
        norm=snakemake.wildcards.norm,
        log=log,
        model_path=snakemake.input.model,
        warm_shards=dict(snakemake.params.warm["norms"]),
        exact_paths=list(snakemake.params.warm["exact"]),
    )
