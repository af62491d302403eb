"""Configuration checks: one clear line per problem, before any job runs.

The workflow's config is checked against ``config/schema.yaml`` (JSON Schema,
draft 7). Errors name the key by its dotted path, say what was expected and what
arrived. Cross-references (a model's data set, a figure's models) are checked too.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message says where and why."""


def load_schema(path: str | os.PathLike | None = None) -> dict:
    with open(path or DEFAULT_SCHEMA, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "the top level"


def _type_name(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _message(err) -> str:
    where = _where(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in err.schema.get("properties", {}))
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"config: unknown key {', '.join(repr(k) for k in extra)} at {where}{hint}"
    if err.validator == "type":
        want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        return f"config: {where} must be of type {want}, got {_type_name(err.instance)} {err.instance!r}"
    if err.validator == "required":
        return f"config: {where} is missing a required key: {err.message.split(' is a required')[0]}"
    if err.validator == "enum":
        return f"config: {where} must be one of {err.validator_value}, got {err.instance!r}"
    return f"config: {where}: {err.message}"


def apply_defaults(instance: Any, schema: dict, root: dict) -> None:
    """Fill ``default`` values of object properties, recursively, in place."""
    if "$ref" in schema:
        ref = schema["$ref"].lstrip("#/").split("/")
        target = root
        for part in ref:
            target = target[part]
        schema = target
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key not in instance and isinstance(sub, dict) and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                apply_defaults(instance[key], sub, root)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in instance:
                if key not in props:
                    apply_defaults(instance[key], extra, root)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            apply_defaults(item, schema["items"], root)


# The attacks-wide keys every norm's attack settings inherit (a norm's own section wins).
ATTACK_WIDE_KEYS = ("strength", "backend", "deterministic", "masking_check")


@functools.lru_cache(maxsize=1)
def _default_schema() -> dict:
    return load_schema()


def with_defaults(instance: dict, pointer: str) -> dict:
    """A copy of ``instance`` with the defaults that ``config/schema.yaml`` gives for the
    object at JSON pointer ``pointer`` (e.g. ``"#/definitions/norm_attack"``) filled in.

    The schema is the one home of every config default: stages called outside the workflow
    (tests, notebooks) fill their sections here instead of restating the numbers.
    """
    root = _default_schema()
    schema = _resolve({"$ref": pointer}, root)
    out = copy.deepcopy(instance)
    apply_defaults(out, schema, root)
    return out


def attack_section(attack: dict) -> dict:
    """One norm's attack settings with every default filled in: the attacks-wide keys
    (:data:`ATTACK_WIDE_KEYS`, from ``properties/attacks``) under the norm's own section
    (``definitions/norm_attack``). This is what the workflow passes an attack job."""
    wide = with_defaults({k: attack[k] for k in ATTACK_WIDE_KEYS if k in attack}, "#/properties/attacks")
    own = with_defaults({k: v for k, v in attack.items() if k not in ATTACK_WIDE_KEYS}, "#/definitions/norm_attack")
    return {**{k: wide[k] for k in ATTACK_WIDE_KEYS}, **own}


def model_section(spec: dict) -> dict:
    """A model's section (``models.<name>``) with the schema's defaults filled in."""
    return with_defaults(spec, "#/properties/models/additionalProperties")


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def coerce_strings(instance: Any, schema: dict, root: dict) -> Any:
    """Turn strings into numbers/booleans where the schema wants those.

    Snakemake parses nested ``--config`` values (``--config 'attacks={shards: 8}'``)
    with YAML's BaseLoader, so every nested scalar arrives as a string.
    """
    schema = _resolve(schema, root)
    want = schema.get("type")
    want = set(want) if isinstance(want, list) else {want}
    if isinstance(instance, str) and want & {"integer", "number", "boolean", "null"} and "string" not in want:
        try:
            value = yaml.safe_load(instance)
        except yaml.YAMLError:
            return instance
        return value if not isinstance(value, (dict, list, str)) else instance
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: coerce_strings(v, props[k], root) if k in props
                else (coerce_strings(v, extra, root) if isinstance(extra, dict) else v)
                for k, v in instance.items()}
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [coerce_strings(v, schema["items"], root) for v in instance]
    return instance


def validate_config(config: dict, schema_path: str | os.PathLike | None = None, deep: bool = True) -> dict:
    """Check ``config``; return a copy with defaults filled in. Raises :class:`ConfigError`.

    ``deep`` also checks training and attack options against the code that takes them
    (imports TensorFlow); Snakemake's job subprocesses skip that, the main process did it.
    """
    import jsonschema

    schema = load_schema(schema_path)
    if not isinstance(config, dict):
        raise ConfigError(f"config: expected a mapping at the top level, got {_type_name(config)}")
    config = coerce_strings(config, schema, schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        lines = sorted({_message(e) for e in errors})
        raise ConfigError("\n".join(lines))
    cfg = copy.deepcopy(config)
    apply_defaults(cfg, schema, schema)
    problems = cross_check(cfg, deep=deep)
    if problems:
        raise ConfigError("\n".join(problems))
    return cfg


def cross_check(cfg: dict, deep: bool = True) -> list[str]:
    """References between sections: every name used must be defined; options must be known."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the deep checks import TensorFlow
    problems = []
    datasets = cfg.get("datasets", {})
    models = cfg.get("models", {})
    for name, d in datasets.items():
        if "bounds" in d and not float(d["bounds"][0]) < float(d["bounds"][1]):
            problems.append(f"config: datasets.{name}.bounds must be [low, high] with low < high, got {d['bounds']}")
    for name, m in models.items():
        box = datasets.get(m["dataset"], {}).get("bounds")
        if box is not None and [float(b) for b in box] != [0.0, 1.0] and m["source"] == "train" \
                and m.get("method", "st") != "st":
            problems.append(f"config: models.{name}: training method {m['method']!r} keeps its adversarial inputs "
                            f"in [0, 1], but data set {m['dataset']!r} lies in {list(box)}; use method st")
        if m["dataset"] not in datasets:
            problems.append(f"config: models.{name}.dataset names {m['dataset']!r}, which is not under datasets")
        if m["source"] in MODEL_FILE_SUFFIXES:
            suffixes = MODEL_FILE_SUFFIXES[m["source"]]
            if "path" not in m:
                problems.append(f"config: models.{name} has source: {m['source']} but no path to a "
                                f"{' or '.join(suffixes)} file")
            elif Path(m["path"]).suffix.lower() not in suffixes:
                problems.append(f"config: models.{name}.path {m['path']!r} must end in {' or '.join(suffixes)} "
                                f"for source: {m['source']}")
    for m in cfg.get("exact", {}).get("models", []):
        if m not in models:
            problems.append(f"config: exact.models names {m!r}, which is not under models")
    for ds in cfg.get("scale", {}).get("datasets", []):
        if ds not in datasets:
            problems.append(f"config: scale.datasets names {ds!r}, which is not under datasets")
    methods = {n: spec["methods"] for n, spec in cfg.get("attacks", {}).get("norms", {}).items()
               if deep and spec.get("methods")}
    if methods:
        from robcurves.attacks import validate_method_config  # imports TensorFlow: only when needed

        for norm_name, items in methods.items():
            for i, item in enumerate(items):
                try:
                    validate_method_config(norm_name, item)
                except ValueError as err:
                    problems.append(f"config: attacks.norms.{norm_name}.methods[{i}]: {err}")
    trained = {n: m for n, m in models.items() if deep and m["source"] == "train"}
    if trained:
        from robcurves.training import resolve_options  # imports TensorFlow: only when needed

        for name, m in trained.items():
            try:
                resolve_options(m.get("method", "st"), m.get("eps"), m.get("options", {}))
            except ValueError as err:
                problems.append(f"config: models.{name}: {err}")
    for fig, spec in cfg.get("figures", {}).get("robustness_curves", {}).items():
        for m in spec["models"]:
            if m not in models:
                problems.append(f"config: figures.robustness_curves.{fig}.models names {m!r}, which is not under models")
        for n in spec.get("norms", []):
            if n not in cfg["attacks"]["norms"]:
                problems.append(f"config: figures.robustness_curves.{fig}.norms has {n!r}, which is not under attacks.norms")
    return problems


#: model sources that read a file, and the file name endings each accepts
MODEL_FILE_SUFFIXES = {"convert": (".mat",), "keras": (".keras", ".h5"), "onnx": (".onnx",)}


def missing_model_files(cfg: dict, root: str | os.PathLike = ".") -> list[str]:
    """The model files (``.mat``, ``.keras``/``.h5``, ``.onnx``) the config names but that are not on disk."""
    out = []
    for name, m in cfg.get("models", {}).items():
        if m["source"] in MODEL_FILE_SUFFIXES and "path" in m and not (Path(root) / m["path"]).is_file():
            out.append(f"  models.{name}: {m['path']} (source: {m['source']})")
    return out
