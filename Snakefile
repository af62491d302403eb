# robcurves: robustness curves of classifiers, from data to figures.
#
#   snakemake --cores 8 all_figures                        # the offline default
#   snakemake --cores 8 --configfile=config/paper.yaml all_figures
#
# The DAG: data (download | bundled) -> models (train | convert .mat) ->
# per-shard minimal adversarial perturbations -> merged curves -> figures and tables.

from pathlib import Path

from snakemake.utils import min_version

min_version("8.0")


# The default config, found next to this file also when --directory points elsewhere.
# A --configfile on the command line replaces it as a whole (Snakemake alone would
# merge the two, mixing e.g. the default's models into config/paper.yaml's);
# --config key=value still overrides single keys of whichever file is used.
if not workflow.overwrite_configfiles:

    configfile: str(Path(workflow.basedir) / "config" / "config.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/attacks.smk"
include: "rules/exact.smk"
include: "rules/curves.smk"
include: "rules/figures.smk"
include: "rules/distances.smk"
include: "rules/cluster.smk"


rule all_figures:
    default_target: True
    input:
        targets.all_figure_files(config),


rule all_curves:
    input:
        targets.all_curve_files(config),


# A target named after every figure and table, e.g. `snakemake --cores 8 fig2_digits`
# builds that figure alone (robcurves.targets.named_target_outputs).
_RULE_NAMES = {r.name for r in workflow.rules}
for _target, _files in targets.named_target_outputs(config).items():
    if _target in _RULE_NAMES:
        raise WorkflowError(
            f"figures.robustness_curves.{_target.removeprefix('gallery_')}: the target {_target!r} would clash "
            f"with the rule of that name; rename the figure entry"
        )

    rule:
        name:
            _target
        input:
            _files,
