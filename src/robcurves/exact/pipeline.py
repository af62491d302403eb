"""Old name of :mod:`robcurves.exact.stage` (the exact stage); everything it held is importable here.

The file lists the rules ask for moved to :mod:`robcurves.targets`; ``exact_section(config)``
is ``config["exact"]`` of the validated config.
"""

from robcurves.exact.stage import (  # noqa: F401
    config_from_dict,
    exact_runtime_minutes,
    exact_shard,
    exact_tolerance,
    load_attack_warm_start,
    merge_exact,
    shard_indices,
    warm_start_settings,
)
from robcurves.targets import (  # noqa: F401
    exact_attack_files,
    exact_figure_files,
    exact_labels,
    exact_merged_files,
    exact_shard_files,
)


def exact_section(config: dict) -> dict:
    return dict(config.get("exact") or {})


def exact_n_shards(config: dict) -> int:
    return int(exact_section(config).get("shards", 1))
