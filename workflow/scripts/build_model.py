"""Snakemake: train a model on a prepared data set, or read a .mat, .keras/.h5 or .onnx file."""
from robcurves.joblog import log_to, snakemake_threads

with log_to(snakemake.log[0]) as log:
    snakemake_threads(snakemake.threads)
    from robcurves.stages import build_model

    build_model(
        dict(snakemake.params.spec),
        name=snakemake.wildcards.model,
        out_path=snakemake.output.model,
        train_path=snakemake.input.get("train"),
        test_path=snakemake.input.get("test"),
        model_file=snakemake.input.get("file"),
        log=log,
    )
