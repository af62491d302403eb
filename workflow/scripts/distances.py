"""Snakemake: exact nearest inter-/intra-class distances of one prepared data split."""
from robcurves.joblog import log_to

with log_to(snakemake.log[0]) as log:
    import time

    from robcurves.data import load_dataset
    from robcurves.scale import nearest_neighbour_distances, save_nearest

    ds = load_dataset(snakemake.input[0])
    log.info("%s/%s: %d points, input shape %s, %d threads", ds.name, ds.split, len(ds), ds.input_shape,
             snakemake.threads)
    start = time.perf_counter()
    nn = nearest_neighbour_distances(ds.x, ds.y, norms=snakemake.params.norms, threads=snakemake.threads,
                                     progress=log.info)
    log.info("done in %.1f s (%s); %d cross-class duplicate pair(s)", time.perf_counter() - start,
             nn.meta, len(nn.duplicate_pairs))
    save_nearest(snakemake.output[0], nn, meta={"name": ds.name, "split": ds.split, "source": ds.source,
                                                "data_sha256": ds.meta["sha256"]})
