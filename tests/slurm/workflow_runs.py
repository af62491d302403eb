"""Shared helpers for the tests that run the workflow: SLURM, resume and shards.

The session's uninterrupted local run of ``tests/configs/tiny.yaml`` (the ``tiny_run``
fixture of tests/conftest.py) is the reference for all of them. Their own runs start from
its prepared data and trained model (``seed_workdir``), so that they spend their time on
what they test: attack shards, merging, scheduling.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"
CONFIG = REPO / "tests" / "configs" / "tiny.yaml"
# The interpreter running the tests is the project's: jobs run it too (`python -m snakemake`).
PYTHON = sys.executable


def snakemake_argv(workdir: Path, *args: str, target: str = "all_curves",
                   configfiles: tuple[Path, ...] = (CONFIG,)) -> list[str]:
    """Snakemake on ``configfiles`` (later ones update earlier ones, key by key)."""
    # The target comes first: --configfile takes all that follows.
    return [PYTHON, "-m", "snakemake", target, "-s", str(SNAKEFILE), "--directory", str(workdir),
            *args, "--configfile", *map(str, configfiles)]


def run_snakemake(argv: list[str], log: Path, env: dict | None = None, timeout: float = 900,
                  check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake from the repository root (where profiles/default is found), log to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.run(argv, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake exited {proc.returncode}: {' '.join(argv)}\n"
                             f"--- last lines of {log} ---\n{tail(log)}")
    return proc


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError as err:
        return f"(cannot read {path}: {err})"


def seed_workdir(reference: Path, workdir: Path) -> Path:
    """Copy the reference's prepared data and model (mtimes kept) into a fresh ``workdir``.

    Snakemake then sees data and model as up to date and starts at the attack shards.
    """
    for part in ("data", "models"):
        shutil.copytree(reference / "results" / part, workdir / "results" / part, copy_function=shutil.copy2)
    return workdir


def shard_files(workdir: Path) -> list[Path]:
    return sorted((workdir / "results" / "attacks").glob("*/*/*/shard*of*.npz"))


def curve_bytes(workdir: Path) -> dict[str, bytes]:
    """Every curve file, by path relative to ``results/curves``, as bytes."""
    base = workdir / "results" / "curves"
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*.json"))}


def snakemake_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
