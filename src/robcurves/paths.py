"""Every file the workflow writes, as one pattern each, relative to its working directory.

The patterns use the workflow's wildcards (``{dataset}``, ``{model}``, ``{norm}``,
``{shard}``, ``{nshards}``, ``{name}``, and ``{split}``, ``{ext}``). The rules
(``rules/*.smk``) use them as output patterns; Python code fills them in with
:func:`fill`, which leaves the wildcards it is not given in place. No other module or rule
file spells out a path under ``results/`` or ``logs/``.

What the files hold: ``docs/CONTRACTS.md``.
"""

from __future__ import annotations

import re

RAW_MANIFEST = "results/raw/{dataset}/manifest.json"  # downloaded files, next to their manifest
DATA = "results/data/{dataset}/{split}.npz"  # split: train or test
MODEL = "results/models/{dataset}/{model}/model.keras"
MODEL_SIDECAR = "results/models/{dataset}/{model}/model.json"
ATTACK_SHARD = "results/attacks/{dataset}/{model}/{norm}/shard{shard}of{nshards}.npz"
CURVE = "results/curves/{dataset}/{model}/{norm}.json"
EXACT_SHARD = "results/exact/{dataset}/{model}/{norm}/shard{shard}of{nshards}.npz"
EXACT_MERGED = "results/exact/{dataset}/{model}/{norm}.json"
DISTANCES = "results/distances/{dataset}.npz"
FIGURE = "results/figures/{name}.{ext}"
TABLE = "results/tables/{name}.{ext}"

FIGURE_FORMATS = ("pdf", "png")
TABLE_FORMATS = ("csv", "md", "tex")

# The {name} of each figure and table.
CURVES_FIGURE = "curves_{name}"  # one per entry of figures.robustness_curves
GALLERY_FIGURE = "gallery_{name}"  # ... and its gallery of minimal adversarial examples
TOY_FIGURE = "fig1_toy"
SCALE_FIGURE = "fig5_scale"
EXACT_FIGURE = "exact_vs_approx"
TABLE1 = "table1_robust_error"
CROSSINGS = "crossings"
TABLE2 = "table2"
EXACT_GAPS = "exact_gap_statistics"  # CSV only

# Each rule's log, logs/<stem>.log; Snakemake's timings of its jobs, logs/benchmarks/<stem>.tsv.
_LOG_STEMS = {
    "download_dataset": "download/{dataset}",
    "prepare_dataset": "data/{dataset}",
    "build_model": "models/{dataset}/{model}",
    "attack_shard": "attacks/{dataset}/{model}/{norm}/shard{shard}of{nshards}",
    "merge_curve": "curves/{dataset}/{model}/{norm}",
    "exact_shard": "exact/{dataset}/{model}/{norm}/shard{shard}of{nshards}",
    "exact_merge": "exact/{dataset}/{model}/{norm}.merge",
    "exact_figure": f"figures/{EXACT_FIGURE}",
    "figure_robustness_curves": f"figures/{CURVES_FIGURE}",
    "figure_gallery": f"figures/{GALLERY_FIGURE}",
    "fig1_toy": f"figures/{TOY_FIGURE}",
    "fig5": f"figures/{SCALE_FIGURE}",
    "table1": "tables/table1",
    "crossings": f"tables/{CROSSINGS}",
    "table2": f"tables/{TABLE2}",
    "nearest_distances": "distances/{dataset}",
}

_WILDCARD = re.compile(r"\{(\w+)\}")


def fill(pattern: str, **values) -> str:
    """``pattern`` with the wildcards named in ``values`` replaced (in one pass); others stay."""
    return _WILDCARD.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), pattern)


def figure(name: str, ext: str) -> str:
    """A figure's file, e.g. ``figure(TOY_FIGURE, "pdf")``."""
    return fill(FIGURE, name=name, ext=ext)


def figures(name: str) -> list[str]:
    """A figure's files, one per format (PDF, PNG)."""
    return [figure(name, ext) for ext in FIGURE_FORMATS]


def table(name: str, ext: str) -> str:
    """A table's file, e.g. ``table(TABLE2, "tex")``."""
    return fill(TABLE, name=name, ext=ext)


def tables(name: str) -> list[str]:
    """A table's files, one per format (CSV, Markdown, LaTeX)."""
    return [table(name, ext) for ext in TABLE_FORMATS]


def log(rule: str) -> str:
    """The log file pattern of ``rule`` (its jobs' wildcards)."""
    return f"logs/{_LOG_STEMS[rule]}.log"


def benchmark(rule: str) -> str:
    """The file in which Snakemake records the time and memory of a job of ``rule``."""
    return f"logs/benchmarks/{_LOG_STEMS[rule]}.tsv"
