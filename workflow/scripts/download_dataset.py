"""Snakemake: download a published data set, verify checksums, write a manifest."""
from pathlib import Path

from robcurves.atomic import write_json
from robcurves.joblog import log_to

with log_to(snakemake.log[0]) as log:
    from robcurves.data import download_dataset

    raw_dir = Path(snakemake.output[0]).parent
    spec = snakemake.params.spec
    files = download_dataset(snakemake.params.name, raw_dir, mirror=spec.get("mirror"), sha256=spec.get("sha256"))
    log.info("downloaded %s into %s", snakemake.params.name, raw_dir)
    write_json(snakemake.output[0], {"dataset": snakemake.params.name, "files": files})
