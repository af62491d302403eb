# Config validation, wildcard constraints and the helpers that need the workflow object.
# Paths come from robcurves.paths (one pattern per file), the files a config asks for from
# robcurves.targets.
import sys
from pathlib import Path

_SRC = Path(workflow.basedir) / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from robcurves import paths, targets
from robcurves.config import ATTACK_WIDE_KEYS, ConfigError, validate_config, missing_model_files

try:
    _validated = validate_config(config, deep=workflow.is_main_process)
except ConfigError as err:
    raise WorkflowError(f"invalid configuration:\n{err}") from None
config.clear()
config.update(_validated)

# Model files (Croce et al.'s .mat files, your own .keras/.h5 or .onnx). A real run stops
# before any job starts, listing every missing file; a dry run (-n) only warns and shows the
# whole DAG (a model whose file is missing gets no file input). workflow.dryrun is known
# when the DAG is built, not here.
MISSING_MODEL_FILES = missing_model_files(config)
_MISSING_MESSAGE = (
    "model files are missing; put them at these paths (for Croce et al.'s .mat files, "
    "docs/PAPER.md gives each file's original name and where to download it):\n"
    + "\n".join(MISSING_MODEL_FILES)
)
_MISSING_WARNED = []


def model_file_input(path):
    """The file input of a model read from a file, or none while the file is missing (see above)."""
    if Path(path).is_file():
        return path
    if workflow.dryrun and not _MISSING_WARNED:
        _MISSING_WARNED.append(True)
        logger.warning(f"WARNING: {_MISSING_MESSAGE}\nThis dry run shows the DAG; a real run stops here.")
    return []


if MISSING_MODEL_FILES:

    def _stop_for_missing_model_files(log):
        raise WorkflowError(_MISSING_MESSAGE)

    workflow.onstart(_stop_for_missing_model_files)


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_\-]*",
    model=r"[A-Za-z0-9][A-Za-z0-9_\-]*",
    norm=r"linf|l2|l1",
    shard=r"\d+",
    nshards=r"\d+",
    name=r"[A-Za-z0-9][A-Za-z0-9_\-]*",


def model_spec(wildcards):
    """The config entry of a model, checked against the data set in the path."""
    spec = config["models"].get(wildcards.model)
    if spec is None:
        raise WorkflowError(f"model {wildcards.model!r} is not in the config")
    if spec["dataset"] != wildcards.dataset:
        raise WorkflowError(
            f"model {wildcards.model!r} belongs to data set {spec['dataset']!r}, not {wildcards.dataset!r}"
        )
    return spec


def _dataset_spec(wildcards):
    spec = config["datasets"].get(wildcards.dataset)
    if spec is None:
        raise WorkflowError(f"data set {wildcards.dataset!r} is not in the config")
    return spec


def _raw_manifest(wildcards):
    if _dataset_spec(wildcards)["source"] == "download":
        return [paths.fill(paths.RAW_MANIFEST, dataset=wildcards.dataset)]
    return []


def _model_inputs(wildcards):
    spec = model_spec(wildcards)
    if spec["source"] in ("convert", "keras", "onnx"):
        return {"file": model_file_input(spec["path"]), "test": targets.data_file(wildcards.dataset)}
    return {
        "train": targets.data_file(wildcards.dataset, "train"),
        "test": targets.data_file(wildcards.dataset),
    }


def attack_params(norm):
    """The norm's attack settings over the attacks-wide ones (strength, backend, ...)."""
    top = {k: config["attacks"][k] for k in ATTACK_WIDE_KEYS if k in config["attacks"]}
    return {**top, **config["attacks"]["norms"][norm]}
