"""The command line: every user mistake is one line on stderr naming the file or flag, exit 2.

The bad inputs run in one subprocess (TensorFlow starts once): each call of ``main`` gets
its own file descriptor 2, so what TensorFlow's C++ runtime prints counts too, as it
does for a user in a terminal.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# Runs in a subprocess: writes the inputs, calls main() per case with fd 2 captured.
DRIVER = textwrap.dedent(r'''
    import json, os, sys, tempfile
    import numpy as np
    os.chdir(sys.argv[1])
    rng = np.random.default_rng(0)
    x = rng.random((12, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, 12)
    np.savez("ok.npz", x=x, y=y)
    xn = x.copy(); xn[3, 2, 2, 0] = np.nan
    np.savez("nan.npz", x=xn, y=y)
    np.savez("labels.npz", x=x, y=y + 5)
    np.savez("range.npz", x=x * 2 - 0.5, y=y)
    np.savez("shape.npz", x=rng.random((4, 10, 10, 1)).astype(np.float32), y=y[:4])
    np.savez("nokeys.npz", images=x)
    open("trunc.npz", "wb").write(open("ok.npz", "rb").read()[:100])
    from robcurves.cli import main
    cases = json.loads(sys.argv[2])
    out = {}
    for name, argv in cases.items():
        with tempfile.TemporaryFile() as err:
            sys.stderr.flush(); saved = os.dup(2); os.dup2(err.fileno(), 2)
            try:
                try:
                    rc = main(argv)
                except SystemExit as e:
                    rc = e.code
                except BaseException as e:  # a traceback would end up here
                    import traceback; traceback.print_exc(); rc = "exception"
            finally:
                sys.stderr.flush(); os.dup2(saved, 2); os.close(saved)
            err.seek(0)
            out[name] = {"rc": rc, "stderr": err.read().decode("utf-8", "replace")}
    print("RESULTS " + json.dumps(out))
''')


def _model_files(folder):
    """A small Keras model (8x8x1 -> 10), its truncated copy and a file that is no model."""
    from robcurves.models import lenet_small

    lenet_small((8, 8, 1), 10).save(folder / "m.keras")
    data = (folder / "m.keras").read_bytes()
    (folder / "trunc.keras").write_bytes(data[: len(data) // 2])
    (folder / "garbage.keras").write_bytes(b"not a model at all")
    (folder / "garbage.mat").write_bytes(b"not a mat file either")


# case -> (argv, the words its one line must contain; "!word": must not contain)
CASES = {
    "missing data file": (["--dataset", "nope.npz", "--model_path", "m.keras"], ["--dataset", "nope.npz", "not found"]),
    "missing model file": (["--dataset", "ok.npz", "--model_path", "nope.keras"], ["--model_path", "nope.keras", "not found"]),
    "NaN pixels": (["--dataset", "nan.npz", "--model_path", "m.keras"], ["--dataset nan.npz", "NaN", "index 3"]),
    "labels out of range": (["--dataset", "labels.npz", "--model_path", "m.keras"], ["--dataset labels.npz", "labels", "0..9"]),
    "values outside the bounds": (["--dataset", "range.npz", "--model_path", "m.keras"], ["--dataset range.npz", "[0, 1]"]),
    # (a truncated file used to be reported as "File not found")
    "truncated .keras": (["--dataset", "ok.npz", "--model_path", "trunc.keras"],
                         ["--model_path trunc.keras", "not a valid model file", "!not found"]),
    "foreign .keras": (["--dataset", "ok.npz", "--model_path", "garbage.keras"],
                       ["--model_path garbage.keras", "not a valid model file", "!not found"]),
    "corrupt .mat": (["--dataset", "ok.npz", "--model_path", "garbage.mat", "--nn_type", "fc1"], ["--model_path garbage.mat", "not a valid model file"]),
    "truncated .npz": (["--dataset", "trunc.npz", "--model_path", "m.keras"], ["--dataset trunc.npz", "not a valid .npz"]),
    "npz without x and y": (["--dataset", "nokeys.npz", "--model_path", "m.keras"], ["--dataset nokeys.npz", "expected x and y"]),
    "shape mismatch": (["--dataset", "shape.npz", "--model_path", "m.keras"], ["--model_path m.keras", "(10, 10, 1)", "(8, 8, 1)"]),
    "unknown norm": (["--dataset", "ok.npz", "--model_path", "m.keras", "--norms", "3"], ["--norms", "'3'"]),
    "bad threshold": (["--dataset", "ok.npz", "--model_path", "m.keras", "--thresholds", "8/0"], ["--thresholds", "8/0"]),
    "threshold of a norm not run": (["--dataset", "ok.npz", "--model_path", "m.keras", "--norms", "inf",
                                     "--thresholds", "2:0.5"], ["--thresholds", "l2"]),
    "missing flag": (["--dataset", "ok.npz"], ["--model_path"]),
    "not a number": (["--dataset", "ok.npz", "--model_path", "m.keras", "--n_points", "x"], ["--n_points", "'x'"]),
    "zero points": (["--dataset", "ok.npz", "--model_path", "m.keras", "--n_points", "0"], ["--n_points"]),
    "bad bounds": (["--dataset", "ok.npz", "--model_path", "m.keras", "--bounds", "1", "0"], ["--bounds"]),
}


@pytest.fixture(scope="module")
def cli_errors(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    _model_files(folder)
    argv = {name: a for name, (a, _) in CASES.items()}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(folder), json.dumps(argv)], capture_output=True,
                          text=True, timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")), None)
    assert line, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(line[len("RESULTS "):]), folder


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_input_is_one_line_and_exit_2(cli_errors, case):
    results, folder = cli_errors
    got = results[case]
    lines = [ln for ln in got["stderr"].splitlines() if ln.strip()]
    assert got["rc"] == 2, f"{case}: exit code {got['rc']}, stderr:\n{got['stderr'][-2000:]}"
    assert len(lines) == 1, f"{case}: expected one line on stderr, got {len(lines)}:\n{got['stderr'][-2000:]}"
    assert "Traceback" not in got["stderr"]
    assert lines[0].startswith("robcurves: error: ")
    for word in CASES[case][1]:
        if word.startswith("!"):
            assert word[1:] not in lines[0].lower(), f"{case}: {word[1:]!r} in {lines[0]!r}"
        else:
            assert word in lines[0], f"{case}: {word!r} not in {lines[0]!r}"
    assert not (folder / "robustness_curves").exists(), "a failed run must write nothing"


def test_thresholds_print_robust_error_with_interval(tmp_path, capsys):
    """--thresholds: R(eps) per norm with its 95% Clopper-Pearson interval, read by the eps
    convention (8/255 as written), the same numbers as the curve; --save writes the table."""
    from robcurves.cli import main
    from robcurves.curves import RobustnessCurve, robust_error_at
    from robcurves.models import lenet_small
    from robcurves.tables import clopper_pearson

    rng = np.random.default_rng(1)
    x = rng.random((6, 8, 8, 1)).astype(np.float32)
    model = lenet_small((8, 8, 1), 10, seed=0)
    y = np.argmax(np.asarray(model(x)), axis=1)  # correctly classified: the attacks have work to do
    np.savez(tmp_path / "d.npz", x=x, y=y)
    model.save(tmp_path / "m.keras")
    rc = main(["--dataset", str(tmp_path / "d.npz"), "--model_path", str(tmp_path / "m.keras"), "--norms", "inf", "2",
               "--thresholds", "8/255", "0.1", "2:0.5", "--save", "True", "--out", str(tmp_path / "out")])
    assert rc == 0
    out = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    rows = [r for r in out if "eps" in r]
    assert [(r["norm"], r["eps"]) for r in rows] == [("linf", "8/255"), ("linf", "0.1"), ("l2", "8/255"),
                                                     ("l2", "0.1"), ("l2", "0.5")]
    for r in rows:
        curve = RobustnessCurve.load(tmp_path / "out" / f"d_m_{r['norm']}.json")
        assert r["robust_error"] == pytest.approx(robust_error_at(curve, r["eps_value"]))
        k = round(r["robust_error"] * r["n_points"])
        assert (r["ci95_low"], r["ci95_high"]) == pytest.approx(clopper_pearson(k, 6, 0.05))
        assert r["ci95_low"] <= r["robust_error"] <= r["ci95_high"]
    assert rows[0]["eps_value"] == 8 / 255
    assert (tmp_path / "out" / "d_m_robust_error.csv").read_text().count("\n") == 1 + len(rows)
