# Rules that stay on the submitting machine when a cluster executor is used.
#
# Small, quick jobs (merging shards, figures, tables) would spend longer waiting in a
# SLURM queue than running; downloads need the internet, which login nodes have and
# compute nodes often lack. Heavy rules (prepare_dataset: a large data set needs memory;
# build_model, attack_shard, exact and distance solves) go to the cluster.
#
# Chosen by stage file and by name, so that new rules of these stages are covered. This
# file is included after the stage files: their rules must exist when it runs.

from pathlib import Path

LOCAL_RULE_FILES = ("curves.smk", "figures.smk", "tables.smk")
LOCAL_RULE_PREFIXES = ("download_", "merge_", "figure_", "table_")


def _runs_locally(rule):
    return Path(rule.snakefile).name in LOCAL_RULE_FILES or rule.name.startswith(LOCAL_RULE_PREFIXES)


workflow.localrules(*(r.name for r in workflow.rules if _runs_locally(r)))
