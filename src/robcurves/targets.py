"""Which files a config asks for: the inputs of each rule and the workflow's targets.

Every function takes the *validated* config (:func:`robcurves.config.validate_config`:
the schema's defaults are filled in) and returns paths made from the patterns of
:mod:`robcurves.paths`. The rule files call these; so can anyone without Snakemake (the
tests do).
"""

from __future__ import annotations

from typing import Any

from robcurves import paths


def attack_norms(config: dict) -> list[str]:
    """The norms the attacks run in (the keys of ``attacks.norms``, in the config's order)."""
    return list(config["attacks"]["norms"])


def data_file(dataset: str, split: str = "test") -> str:
    return paths.fill(paths.DATA, dataset=dataset, split=split)


def model_files(dataset: str, model: str) -> dict[str, str]:
    """The model (``model``) and its JSON sidecar (``sidecar``)."""
    return {"model": paths.fill(paths.MODEL, dataset=dataset, model=model),
            "sidecar": paths.fill(paths.MODEL_SIDECAR, dataset=dataset, model=model)}


def attack_shard_files(config: dict, dataset: str, model: str, norm: str) -> list[str]:
    """The attack shards of one (data set, model, norm), ``attacks.shards`` of them."""
    n = config["attacks"]["shards"]
    return [paths.fill(paths.ATTACK_SHARD, dataset=dataset, model=model, norm=norm, shard=i, nshards=n)
            for i in range(n)]


def curve_file(config: dict, model: str, norm: str) -> str:
    return paths.fill(paths.CURVE, dataset=config["models"][model]["dataset"], model=model, norm=norm)


def all_curve_files(config: dict) -> list[str]:
    """Every model's curve in every attack norm."""
    return [curve_file(config, m, n) for m in config["models"] for n in attack_norms(config)]


def curve_figure_names(config: dict) -> list[str]:
    """The entries of ``figures.robustness_curves``: one curve figure and one gallery each."""
    return list(config["figures"].get("robustness_curves", {}))


def _figure_spec(config: dict, name: str) -> dict[str, Any]:
    return config["figures"]["robustness_curves"][name]


def figure_norms(config: dict, name: str) -> list[str]:
    """The norms of figure entry ``name``: its own ``norms``, else every attack norm."""
    return list(_figure_spec(config, name).get("norms", attack_norms(config)))


def figure_curve_files(config: dict, name: str) -> list[str]:
    """The curves that figure entry ``name`` draws."""
    return [curve_file(config, m, n) for m in _figure_spec(config, name)["models"] for n in figure_norms(config, name)]


def robustness_figure_files(config: dict) -> list[str]:
    return [f for name in curve_figure_names(config) for f in paths.figures(paths.fill(paths.CURVES_FIGURE, name=name))]


def gallery_figure_files(config: dict) -> list[str]:
    return [f for name in curve_figure_names(config) for f in paths.figures(paths.fill(paths.GALLERY_FIGURE, name=name))]


def gallery_entries(config: dict, name: str) -> list[dict[str, Any]]:
    """Per model of figure entry ``name``: its files and, per norm, its attack shards (for the gallery)."""
    out = []
    for m in _figure_spec(config, name)["models"]:
        ds = config["models"][m]["dataset"]
        out.append({"label": config["models"][m].get("label", m), **model_files(ds, m), "data": data_file(ds),
                    "shards": {n: attack_shard_files(config, ds, m, n) for n in figure_norms(config, name)}})
    return out


def gallery_input_files(config: dict, name: str) -> list[str]:
    files = []
    for e in gallery_entries(config, name):
        files += [e["model"], e["sidecar"], e["data"]] + [p for ps in e["shards"].values() for p in ps]
    return list(dict.fromkeys(files))


def curve_table_files() -> list[str]:
    """Table 1 and the crossings table (read off the curves)."""
    return paths.tables(paths.TABLE1) + paths.tables(paths.CROSSINGS)


def distance_files(config: dict) -> list[str]:
    """The nearest-distance files of the data sets under ``scale.datasets``."""
    return [paths.fill(paths.DISTANCES, dataset=d) for d in config["scale"]["datasets"]]


def scale_files(config: dict) -> list[str]:
    """Table 2 and Fig. 5, if the config names data sets for them."""
    if not config["scale"]["datasets"]:
        return []
    return paths.tables(paths.TABLE2) + paths.figures(paths.SCALE_FIGURE)


def toy_figure_files(config: dict) -> list[str]:
    return paths.figures(paths.TOY_FIGURE) if config["figures"]["toy"] else []


def exact_shard_files(config: dict, dataset: str, model: str, norm: str) -> list[str]:
    n = config["exact"]["shards"]
    return [paths.fill(paths.EXACT_SHARD, dataset=dataset, model=model, norm=norm, shard=i, nshards=n)
            for i in range(n)]


def _exact_runs(config: dict) -> list[tuple[str, str]]:
    return [(m, n) for m in config["exact"]["models"] for n in config["exact"]["norms"]]


def exact_merged_files(config: dict) -> list[str]:
    return [paths.fill(paths.EXACT_MERGED, dataset=config["models"][m]["dataset"], model=m, norm=n)
            for m, n in _exact_runs(config)]


def exact_labels(config: dict) -> list[str]:
    """The panel labels of the exact figure, one per merged file of :func:`exact_merged_files`."""
    return [f"{m} ({n})" for m, n in _exact_runs(config)]


def exact_attack_files(config: dict, dataset: str, model: str, norm: str) -> list[str]:
    """The attack shards that warm-start the exact stage: those of this (data set, model, norm)
    if the config runs that norm, else none."""
    if norm not in config["attacks"]["norms"]:
        return []
    return attack_shard_files(config, dataset, model, norm)


def warm_start_files(config: dict, dataset: str, model: str, norm: str) -> dict[str, Any]:
    """What the curve merge of (data set, model, norm) reads besides its own shards, by
    ``attacks.warm_start``: the other attack norms' shards (``norms``: norm -> paths) and
    the exact stage's shards of this model in every exact norm (``exact``)."""
    warm = config["attacks"].get("warm_start", {}) or {}
    others = ({n: attack_shard_files(config, dataset, model, n) for n in attack_norms(config) if n != norm}
              if warm.get("norms", True) else {})
    exact = ([p for n in config["exact"]["norms"] for p in exact_shard_files(config, dataset, model, n)]
             if warm.get("exact", False) and model in config["exact"]["models"] else [])
    return {"norms": others, "exact": exact}


def warm_start_input_files(config: dict, dataset: str, model: str, norm: str) -> list[str]:
    w = warm_start_files(config, dataset, model, norm)
    return [p for ps in w["norms"].values() for p in ps] + w["exact"]


def exact_figure_files(config: dict) -> list[str]:
    """The exact-vs-approximate figure, if the config asks for exact solves."""
    return paths.figures(paths.EXACT_FIGURE) if config["exact"]["models"] else []


def all_figure_files(config: dict) -> list[str]:
    """What ``all_figures`` builds: every figure and table the config asks for."""
    return (robustness_figure_files(config) + gallery_figure_files(config) + curve_table_files()
            + scale_files(config) + toy_figure_files(config) + exact_figure_files(config))


def named_target_outputs(config: dict) -> dict[str, list[str]]:
    """Target name -> files: one per figure entry (its curves, and its gallery as
    ``gallery_<entry>``), one per fixed figure or table whose rule has another name."""
    out = {}
    for fig in curve_figure_names(config):
        out[fig] = paths.figures(paths.fill(paths.CURVES_FIGURE, name=fig))
        gallery = paths.fill(paths.GALLERY_FIGURE, name=fig)
        out[gallery] = paths.figures(gallery)
    out[paths.TABLE1] = paths.tables(paths.TABLE1)
    if config["scale"]["datasets"]:
        out[paths.SCALE_FIGURE] = paths.figures(paths.SCALE_FIGURE)
    if exact_figure_files(config):
        out[paths.EXACT_FIGURE] = exact_figure_files(config)
        out[paths.EXACT_GAPS] = [paths.table(paths.EXACT_GAPS, "csv")]
    return out
