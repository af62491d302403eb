"""Attack-shard files for tests of the stages that read them (the exact stage's warm start)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from robcurves.shards import save_attack_shard


def write_attack_shard(path, norm: str, indices, distances, x_adv, status, settings: dict,
                       shard: int = 0, n_shards: int = 1) -> None:
    """A shard as ``robcurves.stages.attack_shard`` writes it, with these arrays and ``settings``."""
    n = len(indices)
    result = SimpleNamespace(norm=norm, distances=np.asarray(distances, np.float32), x_adv=np.asarray(x_adv, np.float32),
                             status=np.asarray(status, str), reason=np.array([""] * n), method=np.array(["test"] * n),
                             per_method={}, config={})
    save_attack_shard(path, result, np.asarray(indices, np.int64), shard, n_shards, settings)


def warm_start_shard(path, model_path, data_path, norm: str, indices, distances, x_adv, status, **changed) -> None:
    """A shard made on the model and data at these paths (what the exact stage checks), with
    ``changed`` settings replacing the real ones (to make a stale shard)."""
    from robcurves import models
    from robcurves.data import load_dataset
    from robcurves.exact.stage import warm_start_settings

    model, sidecar = models.load_model(model_path)
    sha = load_dataset(data_path, verify=False).meta["sha256"]
    settings = {**warm_start_settings(model, sidecar, sha, norm), **changed}
    write_attack_shard(path, norm, indices, distances, x_adv, status, settings)
