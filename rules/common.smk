# Config validation and the helpers every rule file uses.
import sys
from pathlib import Path

_SRC = Path(workflow.basedir) / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from robcurves.config import ConfigError, validate_config, missing_model_files

try:
    _validated = validate_config(config, deep=workflow.is_main_process)
except ConfigError as err:
    raise WorkflowError(f"invalid configuration:\n{err}") from None
config.clear()
config.update(_validated)

# Croce et al.'s .mat files. A real run stops before any job starts, listing every missing
# file; a dry run (-n) only warns and shows the whole DAG (a converted model whose file is
# missing gets no .mat input). workflow.dryrun is known when the DAG is built, not here.
MISSING_MODEL_FILES = missing_model_files(config)
_MISSING_MESSAGE = (
    "model files are missing; put Croce et al.'s .mat files at these paths "
    "(docs/PAPER.md gives each file's original name and where to download it):\n"
    + "\n".join(MISSING_MODEL_FILES)
)
_MISSING_WARNED = []


def mat_input(path):
    """The .mat input of a converted model, or none while the file is missing (see above)."""
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

NORMS = list(config["attacks"]["norms"])
N_SHARDS = config["attacks"]["shards"]


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


def model_files(dataset, model):
    base = f"results/models/{dataset}/{model}"
    return {"model": f"{base}/model.keras", "sidecar": f"{base}/model.json"}


def shard_files(dataset, model, norm):
    return [
        f"results/attacks/{dataset}/{model}/{norm}/shard{i}of{N_SHARDS}.npz"
        for i in range(N_SHARDS)
    ]


def curve_file(model, norm):
    return f"results/curves/{config['models'][model]['dataset']}/{model}/{norm}.json"


def all_curve_files():
    return [curve_file(m, n) for m in config["models"] for n in NORMS]


def figure_curve_files(name):
    spec = config["figures"]["robustness_curves"][name]
    return [curve_file(m, n) for m in spec["models"] for n in spec.get("norms", NORMS)]


def robustness_figure_files():
    names = config["figures"].get("robustness_curves", {})
    return expand("results/figures/curves_{name}.{ext}", name=names, ext=["pdf", "png"])


def gallery_figure_files():
    names = config["figures"].get("robustness_curves", {})
    return expand("results/figures/gallery_{name}.{ext}", name=names, ext=["pdf", "png"])


def gallery_entries(name):
    """Per model of figure entry ``name``: its files and, per norm, its attack shards (for the gallery)."""
    spec = config["figures"]["robustness_curves"][name]
    out = []
    for m in spec["models"]:
        ds = config["models"][m]["dataset"]
        out.append({"label": config["models"][m].get("label", m), **model_files(ds, m),
                    "data": f"results/data/{ds}/test.npz",
                    "shards": {n: shard_files(ds, m, n) for n in spec.get("norms", NORMS)}})
    return out


def gallery_input_files(name):
    files = []
    for e in gallery_entries(name):
        files += [e["model"], e["sidecar"], e["data"]] + [p for ps in e["shards"].values() for p in ps]
    return list(dict.fromkeys(files))


def table_files():
    stems = ["results/tables/table1_robust_error", "results/tables/crossings"]
    return [f"{s}.{ext}" for s in stems for ext in ("csv", "md", "tex")]


def all_figure_files():
    files = robustness_figure_files() + gallery_figure_files() + table_files()
    if config["scale"]["datasets"]:
        files += [f"results/tables/table2.{ext}" for ext in ("csv", "md", "tex")]
        files += ["results/figures/fig5_scale.pdf", "results/figures/fig5_scale.png"]
    if config["figures"]["toy"]:
        files += ["results/figures/fig1_toy.pdf", "results/figures/fig1_toy.png"]
    return files


def _dataset_spec(wildcards):
    spec = config["datasets"].get(wildcards.dataset)
    if spec is None:
        raise WorkflowError(f"data set {wildcards.dataset!r} is not in the config")
    return spec


def _raw_manifest(wildcards):
    if _dataset_spec(wildcards)["source"] == "download":
        return [f"results/raw/{wildcards.dataset}/manifest.json"]
    return []


def _model_inputs(wildcards):
    spec = model_spec(wildcards)
    if spec["source"] == "convert":
        return {"mat": mat_input(spec["path"]), "test": f"results/data/{wildcards.dataset}/test.npz"}
    return {
        "train": f"results/data/{wildcards.dataset}/train.npz",
        "test": f"results/data/{wildcards.dataset}/test.npz",
    }


def named_target_outputs():
    """Target name -> files: one per figure entry (its curves, and its gallery as
    gallery_<entry>), one per fixed figure or table whose rule has another name."""
    from robcurves.exact.pipeline import exact_figure_files

    both = lambda stem: [f"{stem}.pdf", f"{stem}.png"]  # noqa: E731
    out = {}
    for fig in config["figures"].get("robustness_curves", {}):
        out[fig] = both(f"results/figures/curves_{fig}")
        out[f"gallery_{fig}"] = both(f"results/figures/gallery_{fig}")
    out["table1_robust_error"] = [f"results/tables/table1_robust_error.{e}" for e in ("csv", "md", "tex")]
    if config["scale"]["datasets"]:
        out["fig5_scale"] = both("results/figures/fig5_scale")
    if exact_figure_files(config):
        out["exact_vs_approx"] = exact_figure_files(config)
        out["exact_gap_statistics"] = ["results/tables/exact_gap_statistics.csv"]
    return out
