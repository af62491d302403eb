"""Snakemake: build the train/test splits of one data set in the standard format."""
from pathlib import Path

from robcurves.joblog import log_to

with log_to(snakemake.log[0]) as log:
    from robcurves.data import save_dataset
    from robcurves.stages import prepare_dataset

    name = snakemake.wildcards.dataset
    raw_dir = Path(snakemake.input[0]).parent if snakemake.input else None
    train, test = prepare_dataset(name, dict(snakemake.params.spec), raw_dir)
    save_dataset(snakemake.output.train, train)
    save_dataset(snakemake.output.test, test)
    log.info("%s: %d train / %d test points, input shape %s, values in %s", name, len(train), len(test),
             train.input_shape, list(train.bounds))
