"""The SLURM path, run for real: profiles/slurm on a one-node cluster on 127.0.0.1.

Installs Debian's slurm-wlm and munge when they are missing (skips only without root or
without package access), starts munged, slurmctld and slurmd with all state in a temporary
directory (tests/slurm/start.sh), runs tests/configs/tiny.yaml through
``--profile profiles/slurm`` and checks that the attack shards went through SLURM, that
the small rules stayed local, and that the curves equal those of a local run byte for
byte. The daemons are stopped at the end (tests/slurm/stop.sh).

The test cluster differs from a real one in what the test adds as a second profile: no
GPUs (gpu: 0), memory requests capped to the node's, and job status from ``squeue``
(accounting, and so ``sacct``, is off; MinJobAge keeps finished jobs visible).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))
import workflow_runs as wr  # noqa: E402

PROFILES = wr.REPO / "profiles"
SLURM_DIR = wr.REPO / "tests" / "slurm"
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "srun", "scancel")


def _load_profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


# ---------------------------------------------------------------------------------------
# The profiles themselves (no cluster needed)


def test_default_profile_does_not_shadow_the_slurm_profile():
    # Snakemake applies profiles/default on top of --profile profiles/slurm, key by key:
    # a key in both would silently replace the SLURM setting.
    default, slurm = _load_profile("default"), _load_profile("slurm")
    assert not set(default) & set(slurm), set(default) & set(slurm)
    assert default["rerun-incomplete"] is True and default["nolock"] is True


def test_slurm_profile_gives_heavy_rules_their_resources():
    slurm = _load_profile("slurm")
    assert slurm["executor"] == "slurm"
    res, threads = slurm["set-resources"], slurm["set-threads"]
    assert res["attack_shard"]["gpu"] == 1 and res["attack_shard"]["mem_mb"] >= 4000
    assert res["attack_shard"]["runtime"] >= 60
    assert threads["exact_shard"] > 1 and res["exact_shard"]["mem_mb"] >= 4000
    assert threads["nearest_distances"] > 1
    for rule, r in res.items():
        assert all(isinstance(v, int) for v in r.values()), rule


# ---------------------------------------------------------------------------------------
# A real cluster


def _ensure_slurm_installed() -> None:
    if os.geteuid() != 0:
        pytest.skip("the test cluster runs slurmd and munged as root; not root here")
    if all(shutil.which(b) for b in SLURM_BINARIES):
        return
    if not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and there is no apt-get to install slurm-wlm and munge")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.skip(f"no package access: {' '.join(cmd)} timed out")
        if proc.returncode != 0:
            pytest.skip(f"no package access: {' '.join(cmd)} failed: {(proc.stderr or proc.stdout)[-500:]}")
    missing = [b for b in SLURM_BINARIES if not shutil.which(b)]
    assert not missing, f"slurm-wlm and munge installed, but these are still missing: {missing}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _ensure_slurm_installed()
    # The executor plugin is a pinned dependency: a clear failure, not a skip.
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail("snakemake-executor-plugin-slurm is not installed: run ./setup.sh (it is pinned in pyproject.toml)")
    state = tmp_path_factory.mktemp("slurm-state")
    try:
        start = subprocess.run([str(SLURM_DIR / "start.sh"), str(state)], capture_output=True, text=True,
                               timeout=120, stdin=subprocess.DEVNULL)
        assert start.returncode == 0, f"cluster start failed:\n{start.stdout}\n{start.stderr}"
        conf = state / "slurm.conf"
        env = wr.snakemake_env(SLURM_CONF=str(conf), PATH=f"{state / 'bin'}:{os.environ.get('PATH', '')}")
        mem = int(re.search(r"RealMemory=(\d+)", conf.read_text()).group(1))
        yield {"state": state, "env": env, "mem_mb": mem}
    finally:
        subprocess.run([str(SLURM_DIR / "stop.sh"), str(state)], timeout=120, stdin=subprocess.DEVNULL)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            f = state / pid_file
            if f.exists() and f.read_text().strip():
                assert not Path(f"/proc/{f.read_text().strip()}").exists(), f"{pid_file}: daemon still running"


def _test_overrides(cluster, dest: Path) -> Path:
    """A second profile for the test cluster: profiles/slurm's resources, scaled to it.

    A later --profile replaces an earlier one's keys whole, so set-resources and
    set-threads are copied from profiles/slurm and changed: no GPUs, memory at most the
    node's, one thread per job.
    """
    slurm = _load_profile("slurm")
    resources = {}
    for rule, res in slurm["set-resources"].items():
        res = dict(res)
        if "gpu" in res:
            res["gpu"] = 0
        if "mem_mb" in res:
            res["mem_mb"] = min(res["mem_mb"], cluster["mem_mb"])
        resources[rule] = res
    overrides = {
        "set-resources": resources,
        # Two CPUs here; and the threads of the local reference run, so that TensorFlow
        # computes with the same number of threads in both.
        "set-threads": {rule: 1 for rule in slurm["set-threads"]},
        # No accounting on the test cluster: ask squeue (MinJobAge keeps finished jobs).
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        # A failure should show at once, not after a retry.
        "retries": 0,
    }
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(overrides))
    return dest


def _slurm_jobs(env) -> list[dict]:
    out = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T|%l|%k"],
                         env=env, capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        jobid, state, limit, comment = line.split("|", 3)
        jobs.append({"id": jobid, "state": state, "time_limit": limit, "comment": comment})
    return jobs


@pytest.mark.slow
def test_tiny_workflow_through_slurm_equals_local_run(cluster, tiny_run, tmp_path_factory):
    reference = tiny_run
    root = tmp_path_factory.mktemp("slurm-run")
    workdir = wr.seed_workdir(reference, root / "run")
    overrides = _test_overrides(cluster, root / "test-profile")
    log = root / "snakemake.log"
    argv = wr.snakemake_argv(workdir, "--profile", str(PROFILES / "slurm"), "--profile", str(overrides))
    wr.run_snakemake(argv, log, env=cluster["env"], timeout=1500)

    # Every attack shard was a SLURM job, finished, with profiles/slurm's runtime (240 min).
    shards = wr.shard_files(reference)
    jobs = _slurm_jobs(cluster["env"])
    by_rule = {}
    for j in jobs:
        by_rule.setdefault(j["comment"].split("_wildcards_")[0], []).append(j)
    attack_jobs = by_rule.get("rule_attack_shard", [])
    assert len(attack_jobs) == len(shards), jobs
    assert all(j["state"] == "COMPLETED" for j in attack_jobs), jobs
    assert all(j["time_limit"] == "4:00:00" for j in attack_jobs), jobs
    wanted = {f"rule_attack_shard_wildcards_digits_tiny_st_{p.parent.name}_{p.stem[5:].replace('of', '_')}"
              for p in shards}
    assert {j["comment"] for j in attack_jobs} == wanted
    # Merging stayed on the submitting machine (rules/cluster.smk).
    assert "rule_merge_curve" not in by_rule, jobs
    log_text = log.read_text()
    assert log_text.count("has been submitted with SLURM jobid") == len(jobs)
    assert "localrule merge_curve:" in log_text
    # The controller saw them start and finish.
    ctld_log = (cluster["state"] / "slurmctld.log").read_text()
    for j in attack_jobs:
        assert f"JobId={j['id']} done" in ctld_log, j

    # Same numbers as the local run.
    assert wr.curve_bytes(workdir) == wr.curve_bytes(reference)
