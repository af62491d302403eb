# Rules that stay on the submitting machine when a cluster executor is used.
#
# Small, quick jobs (merging shards, figures, tables) would spend longer waiting in a
# SLURM queue than running; downloads need the internet, which login nodes have and
# compute nodes often lack. Everything else goes to the cluster: prepare_dataset (a large
# data set needs memory), build_model, attack_shard, exact_shard, nearest_distances.
# A rule missing here only waits in the queue; a heavy rule listed here would run on the
# login node, so the list names small rules only.
#
# Include this file after every stage file: their rules must exist when it runs.

LOCAL_RULES = (
    "download_dataset",
    "merge_curve",
    "exact_merge",
    "figure_robustness_curves",
    "exact_figure",
    "fig1_toy",
    "fig5",
    "table1",
    "table2",
    "crossings",
)
# New rules named like these are small too.
LOCAL_RULE_PREFIXES = ("download_", "merge_", "figure_", "table_")

workflow.localrules(
    *(r.name for r in workflow.rules if r.name in LOCAL_RULES or r.name.startswith(LOCAL_RULE_PREFIXES))
)
