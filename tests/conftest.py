"""Shared fixtures: one tiny run of the whole DAG per test session.

The tiny config (``tests/configs/tiny.yaml``) builds every target of ``all_figures`` in a
temporary working directory, offline. Tests that need the run's outputs (the end-to-end
checks, the report) take the session fixture ``tiny_run`` so the DAG runs only once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.yaml"


def run_snakemake(workdir: Path, *args: str, configfile: Path = TINY, timeout: int = 900) -> subprocess.CompletedProcess:
    """Snakemake on the project's Snakefile in ``workdir`` with ``configfile``; output captured."""
    # --replace-workflow-config: the Snakefile's default config must not be merged in.
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           f"--configfile={configfile}", "--replace-workflow-config", "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def snakemake_runner():
    """``run_snakemake(workdir, *args, configfile=..., timeout=...)`` for tests."""
    return run_snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The working directory of a finished tiny run of ``all_figures``."""
    work = tmp_path_factory.mktemp("tiny")
    proc = run_snakemake(work, "all_figures")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work
