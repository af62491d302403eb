import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from robcurves.config import ConfigError, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def default_config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_gets_defaults(default_config):
    cfg = validate_config(default_config)
    assert cfg["attacks"]["threads"] >= 1
    assert cfg["datasets"]["digits"]["source"] == "sklearn_digits"


def test_unknown_key_is_named(default_config):
    bad = copy.deepcopy(default_config)
    bad["attacks"]["shard"] = 3  # typo for "shards"
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    msg = str(err.value)
    assert msg.count("\n") == 0
    assert "'shard'" in msg and "attacks" in msg and "shards" in msg  # names the key and what is allowed


def test_wrong_type_is_named(default_config):
    bad = copy.deepcopy(default_config)
    bad["attacks"]["norms"]["linf"]["batch_size"] = "large"
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    msg = str(err.value)
    assert msg.count("\n") == 0
    assert "attacks.norms.linf.batch_size" in msg and "integer" in msg and "'large'" in msg


def test_dangling_reference_is_named(default_config):
    bad = copy.deepcopy(default_config)
    bad["figures"]["robustness_curves"]["fig2_digits"]["models"] = ["nope"]
    with pytest.raises(ConfigError, match="'nope'"):
        validate_config(bad)


def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path, default_config):
    bad = copy.deepcopy(default_config)
    bad["atacks"] = bad.pop("attacks")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(cfg),
         "--directory", str(tmp_path), "-s", str(ROOT / "Snakefile")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "unknown key 'atacks'" in out
    assert not (tmp_path / "results").exists()


def test_training_options_are_checked(default_config):
    bad = copy.deepcopy(default_config)
    bad["models"]["digits_at_linf"]["options"] = {"pgd_stpes": 3}
    with pytest.raises(ConfigError, match="models.digits_at_linf.*pgd_stpes"):
        validate_config(bad)
    bad = copy.deepcopy(default_config)
    del bad["models"]["digits_at_linf"]["eps"]
    with pytest.raises(ConfigError, match="models.digits_at_linf"):
        validate_config(bad)


def test_attack_method_options_are_checked(default_config):
    bad = copy.deepcopy(default_config)
    bad["attacks"]["norms"]["l2"]["methods"] = [{"name": "fmn", "stpes": 10}]
    with pytest.raises(ConfigError, match=r"attacks.norms.l2.methods\[0\].*stpes"):
        validate_config(bad)
    bad["attacks"]["norms"]["l2"]["methods"] = [{"name": "no_such_attack"}]
    with pytest.raises(ConfigError, match="no_such_attack"):
        validate_config(bad)


def test_nested_command_line_values_arrive_as_strings_and_are_coerced(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["attacks"]["shards"] = "8"  # what `--config 'attacks={shards: 8}'` delivers
    cfg["figures"]["toy"] = "false"
    out = validate_config(cfg)
    assert out["attacks"]["shards"] == 8 and out["figures"]["toy"] is False
    cfg["attacks"]["shards"] = "eight"
    with pytest.raises(ConfigError, match="attacks.shards"):
        validate_config(cfg)


def test_atomic_outputs_are_not_private(tmp_path):
    import os

    from robcurves.atomic import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "x.txt", "hi")
    finally:
        os.umask(old)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o644


def test_a_data_set_box_is_checked(default_config):
    ok = copy.deepcopy(default_config)
    ok["datasets"]["digits"]["bounds"] = [-1, 1]
    ok["models"] = {"st": dict(default_config["models"]["digits_st"])}
    ok["figures"]["robustness_curves"] = {}
    ok["exact"] = {}
    assert validate_config(ok, deep=False)["datasets"]["digits"]["bounds"] == [-1, 1]
    bad = copy.deepcopy(ok)
    bad["datasets"]["digits"]["bounds"] = [1, -1]
    with pytest.raises(ConfigError, match=r"datasets\.digits\.bounds must be \[low, high\]"):
        validate_config(bad, deep=False)
    # Adversarial training keeps its inputs in [0, 1]: refused on another box, before any job.
    bad = copy.deepcopy(ok)
    bad["models"]["at"] = dict(default_config["models"]["digits_at_linf"])
    with pytest.raises(ConfigError, match=r"models\.at: training method 'at_linf' .* use method st"):
        validate_config(bad, deep=False)


def test_stage_sections_take_the_schema_defaults():
    """Stages called outside the workflow fill their sections from the schema (its one
    home), and the attack job's settings equal what the workflow passes."""
    import inspect

    from robcurves.attacks import masking
    from robcurves.config import attack_section, model_section, validate_config
    from robcurves.stages import masking_options

    cfg = validate_config({
        "datasets": {"d": {"source": "sklearn_digits"}},
        "models": {"m": {"dataset": "d", "source": "train"}},
        "attacks": {"norms": {"linf": {}}, "strength": "fast"},
        "figures": {},
    }, deep=False)
    workflow_attack = {**{k: cfg["attacks"][k] for k in ("strength", "backend", "deterministic", "masking_check")},
                       **cfg["attacks"]["norms"]["linf"]}
    assert attack_section({"strength": "fast"}) == workflow_attack
    assert attack_section(workflow_attack) == workflow_attack
    assert attack_section({"seed": 3, "masking_check": {"enabled": False}})["masking_check"] == \
        {**cfg["attacks"]["masking_check"], "enabled": False}
    assert model_section({"dataset": "d", "source": "train"}) == cfg["models"]["m"]
    # the library's own keyword defaults say the same as the schema
    sig = inspect.signature(masking.masking_check).parameters
    assert masking_options({}) == {k: sig[k].default for k in ("sample", "min_ratio", "queries")}
