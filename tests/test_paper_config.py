"""config/paper.yaml: the paper's setup validates, its dry run shows the whole DAG, and a
wrong model file name stops a real run before any job, naming the file and its place.

The dry run needs neither the internet nor Croce et al.'s .mat files: it warns about the
missing files and plans every job. The real run is only started with files that exist
(empty placeholders) but one misnamed, so it must stop before its first job.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from robcurves.config import missing_model_files, validate_config

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "paper.yaml"



@pytest.fixture(scope="module")
def paper() -> dict:
    with open(PAPER, encoding="utf-8") as fh:
        return validate_config(yaml.safe_load(fh))


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run: rule -> number of jobs."""
    m = re.search(r"Job stats:\s*\n\s*job\s+count\s*\n[-\s]+\n(.*?)\n\s*total\s+(\d+)", output, re.S)
    assert m, f"no job stats in the output:\n{output[-3000:]}"
    counts = {}
    for line in m.group(1).splitlines():
        rule, n = line.split()
        counts[rule] = int(n)
    assert sum(counts.values()) == int(m.group(2))
    return counts


def test_paper_config_is_the_papers_setup(paper):
    # The four data sets of the models; HAR only for the scale of data sets (Table 2, Fig. 5).
    assert set(paper["datasets"]) == {"mnist", "fmnist", "gts", "cifar10", "har"}
    assert {m["dataset"] for m in paper["models"].values()} == {"mnist", "fmnist", "gts", "cifar10"}
    assert paper["scale"]["datasets"] == ["mnist", "fmnist", "gts", "cifar10", "har"]
    assert paper["scale"]["min_distance"] == 1e-4
    assert all(d["source"] == "download" for d in paper["datasets"].values())
    assert paper["attacks"]["n_points"] == 10_000
    assert set(paper["attacks"]["norms"]) == {"linf", "l2"}

    models = paper["models"]
    for name, m in models.items():
        assert m["source"] == "convert", name
        path = Path(m["path"])
        assert path.parts[0] == "resources" and path.suffix == ".mat", name
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+", path.name), f"{name}: {path.name} (no spaces or colons)"
    assert len({m["path"] for m in models.values()}) == len(models)

    cifar = {n for n, m in models.items() if m["dataset"] == "cifar10"}
    assert cifar == {"cifar10_st", "cifar10_at_linf", "cifar10_at_l2", "cifar10_kw_linf", "cifar10_kw_l2",
                     "cifar10_mmrat_linf", "cifar10_mmrat_l2", "cifar10_mmr_universal"}
    assert all(models[n]["layout"] == "cnn_lenet_small" for n in cifar)
    assert models["cifar10_mmr_universal"]["path"].endswith("mmr_univ_cifar10_gammas_6.0_6.0_lmabdas_1.0_6.0.mat")
    for ds in ("mnist", "fmnist", "gts"):
        assert models[f"{ds}_mmrat_linf"]["dataset"] == ds
    assert models["mnist_fc1_mmrat_linf"]["layout"] == "fc1"
    assert models["mnist_fc1_mmrat_linf"]["dataset"] == "mnist"

    figs = paper["figures"]["robustness_curves"]
    assert paper["figures"]["toy"] is True
    three = [1 / 255, 4 / 255, 8 / 255]
    assert figs["fig2_linf"]["norms"] == ["linf"] and figs["fig2_l2"]["norms"] == ["l2"]
    assert set(figs["fig2_linf"]["models"]) == {"cifar10_st", "cifar10_at_linf", "cifar10_kw_linf",
                                                "cifar10_mmrat_linf", "cifar10_mmr_universal"}
    assert set(figs["fig2_l2"]["models"]) == {"cifar10_st", "cifar10_at_l2", "cifar10_kw_l2",
                                              "cifar10_mmrat_l2", "cifar10_mmr_universal"}
    assert figs["fig2_linf"]["thresholds"]["linf"] == pytest.approx(three)
    assert set(figs["fig3"]["norms"]) == {"linf", "l2"}
    assert {"cifar10_mmrat_linf", "cifar10_mmrat_l2"} <= set(figs["fig3"]["models"])
    assert figs["fig4"]["norms"] == ["linf"]
    assert {models[m]["dataset"] for m in figs["fig4"]["models"]} == {"mnist", "fmnist", "gts", "cifar10"}
    assert all("mmrat_linf" in m for m in figs["fig4"]["models"])
    assert paper["tables"]["robust_error"]["thresholds"]["linf"] == pytest.approx(three)

    # Without the model files, every one of them is reported.
    assert len(missing_model_files(paper, root=ROOT / "tests")) == len(models)


def test_dry_run_shows_the_whole_dag(paper, snakemake_runner, tmp_path):
    proc = snakemake_runner(tmp_path, "-n", "all_figures", configfile=PAPER, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # The missing files are a warning here, listed once each.
    assert "WARNING: model files are missing" in out
    for m in paper["models"].values():
        assert m["path"] in out
    counts = job_counts(out)
    n_models, n_norms, shards = len(paper["models"]), len(paper["attacks"]["norms"]), paper["attacks"]["shards"]
    assert shards == math.ceil(10_000 / 500)
    n_data = len(paper["datasets"])
    assert counts == {
        "download_dataset": n_data,
        "prepare_dataset": n_data,
        "nearest_distances": len(paper["scale"]["datasets"]),
        "table2": 1,
        "fig5": 1,
        "build_model": n_models,
        "attack_shard": n_models * n_norms * shards,
        "merge_curve": n_models * n_norms,
        "figure_robustness_curves": len(paper["figures"]["robustness_curves"]),
        "figure_gallery": len(paper["figures"]["robustness_curves"]),
        "fig1_toy": 1,
        "table1": 1,
        "crossings": 1,
        # The appendix's exact experiment: fc1, first 100 MNIST points, linf, in shards.
        "exact_shard": paper["exact"]["shards"] * len(paper["exact"]["models"]) * len(paper["exact"]["norms"]),
        "exact_merge": len(paper["exact"]["models"]) * len(paper["exact"]["norms"]),
        "exact_figure": 1,
        "all_figures": 1,
    }
    assert paper["exact"]["models"] == ["mnist_fc1_mmrat_linf"] and paper["exact"]["norms"] == ["linf"]
    assert paper["exact"]["n_points"] == 100
    for s in range(paper["exact"]["shards"]):
        assert f"results/exact/mnist/mnist_fc1_mmrat_linf/linf/shard{s}of{paper['exact']['shards']}.npz" in out
    assert not (tmp_path / "results").exists()


def test_a_wrong_model_file_name_stops_the_run_with_a_clear_message(paper, snakemake_runner, tmp_path):
    with open(PAPER, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    (tmp_path / "resources").mkdir()
    for m in raw["models"].values():
        (tmp_path / m["path"]).write_bytes(b"")  # only their existence is checked before the run
    wrong = "resources/cifar10_cnn_lenet_small_ST.mat"  # a typo: the file is ..._st.mat
    raw["models"]["cifar10_st"]["path"] = wrong
    cfg = tmp_path / "paper_typo.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")

    proc = snakemake_runner(tmp_path, "all_figures", configfile=cfg, timeout=600)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "model files are missing" in err
    assert f"models.cifar10_st: {wrong}" in err
    assert "docs/PAPER.md" in err
    # Only the misnamed file is reported, and no job started.
    others = [n for n in raw["models"] if n != "cifar10_st" and f"models.{n}:" in err]
    assert others == [], f"reported as missing although present: {others}"
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


def test_plain_configfile_replaces_the_default_config(snakemake_runner, tmp_path):
    """``--configfile config/paper.yaml`` must not add the default config's models."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           f"--configfile={PAPER}", "-n", "--cores", "1", "all_figures"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    with open(ROOT / "config" / "config.yaml", encoding="utf-8") as fh:
        default_models = set(yaml.safe_load(fh)["models"])
    assert "is extended by additional config" not in out
    leaked = [m for m in default_models if f"/{m}/" in out]
    assert not leaked, f"models of config/config.yaml in the paper's DAG: {leaked}"
