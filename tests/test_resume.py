"""A workflow killed in the attack stage resumes with the same command.

SIGKILL goes to Snakemake and to its jobs (the whole process group), while an attack
shard is being computed and after at least one has finished. The same command run again
must recompute only the missing shards, take no partial file for finished, and give
curves byte-identical to an uninterrupted run.

What makes this work: outputs are written atomically (a killed job leaves only a hidden
temporary file), and profiles/default sets ``rerun-incomplete`` (a shard written just
before the kill, whose job Snakemake had not yet marked finished, is redone) and
``nolock`` (SIGKILL leaves Snakemake's lock behind, which would otherwise refuse the
rerun until ``snakemake --unlock``).
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))
import workflow_runs as wr  # noqa: E402

pytestmark = pytest.mark.slow


def _marked_incomplete(workdir: Path, shard: Path) -> bool:
    """Whether Snakemake had started ``shard``'s job but not yet seen it finish.

    Snakemake's file persistence keeps one marker per output under
    .snakemake/incomplete/, named by the URL-safe base64 of the output's path.
    """
    rel = str(shard.relative_to(workdir))
    return (workdir / ".snakemake" / "incomplete" / base64.urlsafe_b64encode(rel.encode()).decode()).exists()


def _job_pids(workdir: Path) -> list[int]:
    """Processes whose command line mentions ``workdir`` (Snakemake and its jobs' scripts)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(workdir) in cmd:
            pids.append(int(d.name))
    return pids


def test_killed_run_resumes_with_only_missing_shards(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    reference = tiny_run
    expected_curves = wr.curve_bytes(reference)
    n_shards_total = len(wr.shard_files(reference))
    assert n_shards_total >= 3, "the config needs several shards for this test"

    workdir = wr.seed_workdir(reference, root / "run")
    argv = wr.snakemake_argv(workdir, "--cores", "1")
    first_log = root / "first.log"
    with open(first_log, "w") as fh:
        proc = subprocess.Popen(argv, cwd=wr.REPO, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        # Wait until one shard is finished for Snakemake (file there, no incomplete
        # marker) and the next shard's job is running.
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, f"snakemake ended before the kill:\n{wr.tail(first_log)}"
            assert time.monotonic() < deadline, f"no shard finished in time:\n{wr.tail(first_log)}"
            present = wr.shard_files(workdir)
            finished = [p for p in present if not _marked_incomplete(workdir, p)]
            running = [p for p in _job_pids(workdir) if p != proc.pid]
            if finished and len(present) < n_shards_total and running:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for _ in range(100):  # the jobs were in the same process group; make sure they are gone
        if not _job_pids(workdir):
            break
        time.sleep(0.1)
    assert not _job_pids(workdir), "processes of the killed run survived SIGKILL"

    # What the kill left behind.
    present = {p: p.stat().st_mtime_ns for p in wr.shard_files(workdir)}
    finished = {p: t for p, t in present.items() if not _marked_incomplete(workdir, p)}
    assert finished and len(present) < n_shards_total
    # Every shard file that exists is complete: a killed writer leaves only a temporary file.
    from robcurves.shards import load_attack_shard

    for p in present:
        load_attack_shard(p)
    leftovers = [p for p in (workdir / "results" / "attacks").rglob("*") if p.is_file() and p not in present]
    assert all(p.name.startswith(".") and ".tmp" in p.name for p in leftovers), leftovers

    # The same command again.
    second_log = root / "second.log"
    wr.run_snakemake(argv, second_log)

    # Finished shards were not recomputed; the others were.
    for p, mtime in finished.items():
        assert p.stat().st_mtime_ns == mtime, f"{p} was recomputed although it had finished"
    rerun = _attack_jobs_in_log(second_log)
    all_shards = {str(p.relative_to(workdir)) for p in wr.shard_files(workdir)}
    assert len(all_shards) == n_shards_total
    assert rerun == all_shards - {str(p.relative_to(workdir)) for p in finished}

    # And the curves are those of the uninterrupted run, byte for byte.
    assert wr.curve_bytes(workdir) == expected_curves


def _attack_jobs_in_log(log: Path) -> set[str]:
    """Output paths of the attack_shard jobs that a Snakemake log shows being run."""
    outs, in_attack = set(), False
    for line in log.read_text().splitlines():
        s = line.strip()
        if s.endswith("rule attack_shard:"):
            in_attack = True
        elif in_attack and s.startswith("output:"):
            outs.add(s.split(":", 1)[1].strip())
            in_attack = False
    return outs
