"""Snakemake: exact minimal perturbations for one shard of the test points (HiGHS or MIPVerify)."""
from robcurves.joblog import log_to, snakemake_threads

with log_to(snakemake.log[0]) as log:
    snakemake_threads(snakemake.threads)
    exact = dict(snakemake.params.exact)  # the validated config's section: every default filled in
    kwargs = dict(
        model_path=snakemake.input.model,
        data_path=snakemake.input.data,
        out_path=snakemake.output[0],
        norm=snakemake.wildcards.norm,
        shard=int(snakemake.wildcards.shard),
        n_shards=int(snakemake.wildcards.nshards),
        n_points=snakemake.params.n_points,
        exact=exact,
        attack_paths=list(snakemake.input.attacks),
        log=log,
    )
    if exact["backend"] == "mipverify":
        from robcurves.exact.mipverify import mipverify_shard

        mipverify_shard(julia_project=snakemake.params.julia_project, **kwargs)
    else:
        from robcurves.exact.stage import exact_shard

        exact_shard(**kwargs)
