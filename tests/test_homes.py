"""One home each: path patterns in robcurves.paths, colours in robcurves.palette; old module
names keep working."""

from __future__ import annotations

import ast
import importlib
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "robcurves"
PATH_LITERAL = re.compile(r"(^|[^\w.])(results|logs)/")
HEX_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}\b")
# A branch on which norm it is: on its exponent, or on its name.
NORM_BRANCH = re.compile(r"\.p\s*[!=]=|is(inf|finite)\([\w.]*\.p\)"
                         r"|\b(norm|n|nm|norm_name)(\.name)?\s*[!=]=\s*[\"'](linf|l2|l1|inf)[\"']")
# Where a branch on the norm is the point: the norm object itself; the scale kernels choose
# an algorithm per norm (l2 by GEMM); attacks/geometry.py holds the keras.ops side of the
# norm (LinfOps, L2Ops, L1Ops behind Norm.ops) and its name -> class mapping (norm_ops).
NORM_HOMES = {"norms.py", "scale/kernels_tf.py", "attacks/geometry.py"}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def python_strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a Python file that are not docstrings, with their line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip]


def snakemake_strings(path: Path) -> list[tuple[int, str]]:
    """The string tokens of a rule file (Snakemake's syntax tokenizes as Python; comments are not strings)."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return [(t.start[0], t.string) for t in tokens if t.type == tokenize.STRING]


def workflow_code() -> list[Path]:
    files = [p for p in SRC.rglob("*.py")] + sorted((ROOT / "workflow" / "scripts").glob("*.py"))
    return files + sorted((ROOT / "rules").glob("*.smk")) + [ROOT / "Snakefile"]


def strings(path: Path) -> list[tuple[int, str]]:
    return python_strings(path) if path.suffix == ".py" else snakemake_strings(path)


def test_every_path_pattern_lives_in_robcurves_paths():
    """No rule, script or module but robcurves.paths spells out a path under results/ or logs/."""
    found = [f"{p.relative_to(ROOT)}:{line}: {s!r}" for p in workflow_code() if p.name != "paths.py"
             or p.parent != SRC for line, s in strings(p) if PATH_LITERAL.search(s)]
    assert found == [], "path patterns outside robcurves/paths.py:\n" + "\n".join(found)


def test_norm_branches_live_in_the_norm_object():
    """Training, exact, scale, MIPVerify and the attacks ask the norm object (robcurves.norms.Norm,
    or its keras.ops side attacks/geometry.py), not ``if norm == ...``."""
    found = [f"{p.relative_to(SRC)}:{i}: {line.strip()}" for p in sorted(SRC.rglob("*.py"))
             if str(p.relative_to(SRC)) not in NORM_HOMES
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if NORM_BRANCH.search(line.split("#")[0])]
    assert found == [], "norm branches outside robcurves/norms.py:\n" + "\n".join(found)


def test_one_box_diameter():
    """The attacks' largest distance and the exact stage's default radius are the norm's diameter."""
    from robcurves.attacks.geometry import max_distance
    from robcurves.exact.checker import Checker
    from robcurves.norms import NORMS

    for norm in NORMS.values():
        want = {"linf": 2.0, "l2": 2.0 * 48 ** 0.5, "l1": 96.0}[norm.name]
        assert norm.diameter(48, (-1.0, 1.0)) == pytest.approx(want, rel=1e-12)
        assert max_distance(norm, 48, (-1.0, 1.0)) == norm.diameter(48, (-1.0, 1.0))
        assert Checker(None, (4, 4, 3), norm, (-1.0, 1.0)).default_radius() == norm.diameter(48, (-1.0, 1.0))


def test_every_colour_lives_in_robcurves_palette():
    found = [f"{p.relative_to(ROOT)}:{line}: {s!r}" for p in SRC.rglob("*.py") if p.name != "palette.py"
             for line, s in python_strings(p) if HEX_COLOUR.search(s)]
    assert found == [], "colours outside robcurves/palette.py:\n" + "\n".join(found)


def test_the_checks_above_see_strings_and_skip_docstrings(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text('"""Writes results/x.json."""\nA = "results/{x}.json"\nB = f"logs/{A}"\nC = "#D55E00"\n')
    found = [s for _, s in python_strings(mod)]
    assert "results/{x}.json" in found and "#D55E00" in found and not any("Writes" in s for s in found)
    assert any(PATH_LITERAL.search(s) for s in found if s.startswith("logs/"))
    smk = tmp_path / "r.smk"
    smk.write_text('# results/in/a/comment\nrule a:\n    output:\n        "results/a.txt",\n')
    assert snakemake_strings(smk) == [(4, '"results/a.txt"')]


def test_fill_replaces_only_the_wildcards_it_is_given():
    from robcurves import paths

    assert paths.fill(paths.DATA, split="test") == "results/data/{dataset}/test.npz"
    assert paths.fill(paths.ATTACK_SHARD, dataset="d", model="m", norm="l2", shard=0, nshards=2) == \
        "results/attacks/d/m/l2/shard0of2.npz"
    # One pass: a value that holds a wildcard is not filled again.
    assert paths.figure(paths.CURVES_FIGURE, "pdf") == "results/figures/curves_{name}.pdf"
    assert paths.tables(paths.TABLE1) == [f"results/tables/table1_robust_error.{e}" for e in ("csv", "md", "tex")]
    assert paths.log("attack_shard") == "logs/attacks/{dataset}/{model}/{norm}/shard{shard}of{nshards}.log"
    assert paths.benchmark("attack_shard").startswith("logs/benchmarks/attacks/")


def test_targets_of_the_tiny_config():
    import yaml

    from robcurves import targets
    from robcurves.config import validate_config

    config = validate_config(yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text()), deep=False)
    assert targets.attack_shard_files(config, "digits", "tiny_st", "l1") == [
        "results/attacks/digits/tiny_st/l1/shard0of2.npz", "results/attacks/digits/tiny_st/l1/shard1of2.npz"]
    assert targets.exact_attack_files(config, "digits", "tiny_st", "linf") == \
        targets.attack_shard_files(config, "digits", "tiny_st", "linf")
    assert targets.exact_merged_files(config) == [f"results/exact/digits/tiny_st/{n}.json" for n in ("linf", "l2", "l1")]
    files = targets.all_figure_files(config)
    assert "results/figures/curves_tiny.png" in files and "results/figures/exact_vs_approx.pdf" in files
    assert "results/tables/table2.tex" in files and "results/figures/fig1_toy.pdf" in files
    named = targets.named_target_outputs(config)
    assert set(named) == {"tiny", "gallery_tiny", "table1_robust_error", "fig5_scale", "exact_vs_approx",
                          "exact_gap_statistics"}


OLD_NAMES = {
    "robcurves.pipeline": ("robcurves.stages", ["test_accuracy", "model_bounds", "check_bounds_agree",
                                                "rescale_to_bounds", "prepare_dataset", "build_model",
                                                "weights_sha256", "resolved_methods", "attack_settings",
                                                "expected_settings", "attack_shard", "merge_curve"]),
    "robcurves.jobs": ("robcurves.joblog", ["log_to", "snakemake_threads"]),
    "robcurves.exact.pipeline": ("robcurves.exact.stage", ["shard_indices", "load_attack_warm_start", "exact_shard",
                                                           "merge_exact", "config_from_dict", "exact_runtime_minutes",
                                                           "exact_tolerance"]),
    "robcurves.distances": ("robcurves.scale", ["KINDS", "NearestNeighbours", "validate_inputs",
                                                "cross_class_duplicates", "pair_distances", "grid_scale",
                                                "default_threads", "gpu_visible", "nearest_neighbour_distances",
                                                "save_nearest", "load_nearest"]),
    "robcurves.tables": ("robcurves.tablewriter", ["write_table"]),
}


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_old_module_names_still_hold_their_public_names(old):
    new, names = OLD_NAMES[old]
    a, b = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(a, name) is getattr(b, name), f"{old}.{name}"


def test_old_names_are_modules_of_their_own_with_the_new_names():
    import robcurves

    old = importlib.import_module("robcurves.exact.pipeline")
    new = importlib.import_module("robcurves.exact.stage")
    assert old is not new and old.__name__ == "robcurves.exact.pipeline" and new.__spec__.name == new.__name__
    assert set(robcurves.RENAMED_MODULES) == set(OLD_NAMES) - {"robcurves.tables"}
    for name in robcurves.RENAMED_MODULES:  # no file at the old path: git follows the renames
        assert not (SRC.parent / (name.replace(".", "/") + ".py")).exists(), name
    with pytest.raises(ImportError):
        importlib.import_module("robcurves.no_such_module")
    scale = importlib.import_module("robcurves.scale")
    for name in ["STATS", "NORM_ORDER", "kept_distances", "distance_summary", "dimensionality", "table2_rows",
                 "table2_csv", "table2_markdown", "table2_latex", "write_table2", "plot_fig5", "load_results"]:
        assert hasattr(scale, name), name


def test_registries_and_statuses_have_distinct_names():
    """One name, one meaning: the attack, training and exact registries (and the attacks' and
    the exact stage's statuses) are not all called METHODS / STATUSES / minimal_perturbations."""
    attacks = importlib.import_module("robcurves.attacks")
    training = importlib.import_module("robcurves.training")
    exact = importlib.import_module("robcurves.exact")
    bab = importlib.import_module("robcurves.exact.bab")
    for mod in (attacks, training, exact, bab):
        assert not hasattr(mod, "METHODS") and not hasattr(mod, "STATUSES"), mod.__name__
    assert not hasattr(exact, "minimal_perturbations") and not hasattr(bab, "minimal_perturbations")
    assert callable(attacks.minimal_perturbations)  # the public API keeps its name
    assert {"fmn", "apgd"} <= set(attacks.ATTACK_METHODS) and "st" in training.TRAINING_METHODS
    assert set(exact.STRATEGIES) and set(attacks.ATTACK_STATUSES) != set(exact.RECORD_STATUSES)
