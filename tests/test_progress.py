"""Progress of long jobs: work done, rate and ETA, as plain lines in logs (tqdm on a terminal)."""

from __future__ import annotations

import io
import re

import numpy as np

from robcurves.progress import Progress, format_duration

LINE = re.compile(r"^\[(?P<label>[^\]]+)\] (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+) \([\d.]+%\) \| [\d.e+-]+ \w+/s "
                  r"\| elapsed \d+m\d\ds \| ETA (\d+m\d\ds|\?)")


def test_plain_lines_have_work_done_rate_and_eta():
    lines = []
    p = Progress(3, "job", unit="points", log=lines.append, every_s=0.0)
    for i in range(3):
        p.update(1, f"point {i}")
    assert len(lines) == 3 and all(LINE.match(ln) for ln in lines), lines
    assert lines[-1].startswith("[job] 3/3 points (100.0%)") and lines[-1].endswith("| point 2")
    # Throttled: at most one line per every_s, but always the last one.
    lines.clear()
    p = Progress(1000, "job", log=lines.append, every_s=3600)
    for _ in range(1000):
        p.update(1)
    assert len(lines) == 2 and lines[-1].startswith("[job] 1000/1000")
    assert format_duration(95) == "1m35s" and format_duration(3700) == "1h01m40s" and format_duration(float("inf")) == "?"


def test_a_terminal_gets_a_tqdm_bar_and_a_log_file_plain_lines():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, log = Tty(), io.StringIO()
    with Progress(5, "bar", stream=tty) as p:
        for _ in range(5):
            p.update(1)
    assert "5/5" in tty.getvalue() and "\r" in tty.getvalue()  # tqdm redraws in place
    with Progress(5, "plain", stream=log, every_s=0) as p:
        for _ in range(5):
            p.update(1)
    assert "\r" not in log.getvalue() and len(log.getvalue().splitlines()) == 5


def test_training_logs_every_epoch_with_loss_accuracy_rate_and_eta():
    from robcurves.data import load_sklearn_digits
    from robcurves.models import build_model
    from robcurves.training import train_model

    train, _ = load_sklearn_digits()
    model = build_model("fc1", train.input_shape, train.n_classes, seed=0)
    lines = []
    train_model(model, train, "st", epochs=2, batch_size=256, learning_rate=1e-3, seed=0, log=lines.append)
    assert len(lines) == 2
    for i, ln in enumerate(lines, 1):
        assert LINE.match(ln) and ln.startswith(f"[train st] {i}/2 epochs"), ln
        assert re.search(r"loss [\d.]+ \(cross-entropy [\d.]+\), accuracy [\d.]+, \d+ samples/s", ln), ln


def test_nearest_distances_report_per_tile_block():
    from robcurves.scale import nearest_neighbour_distances

    rng = np.random.default_rng(0)
    x, y = rng.random((600, 5)).astype(np.float32), rng.integers(0, 3, 600)
    lines = []
    nn = nearest_neighbour_distances(x, y, block_size=128, threads=1, grid=None, progress=lines.append)
    assert any(ln.startswith("[nearest linf+l1]") for ln in lines) and any(ln.startswith("[nearest l2]") for ln in lines)
    assert all(LINE.match(ln) for ln in lines), lines
    assert lines[-1].split()[2] == "360000/360000"  # the l2 scan's ordered pairs, all done
    ref = nearest_neighbour_distances(x, y, block_size=128, threads=1, grid=None)
    assert all(np.array_equal(nn.inter(n), ref.inter(n)) for n in ("linf", "l2", "l1"))


def test_exact_stage_reports_each_point_with_running_bracket_statistics():
    import keras

    from robcurves.exact import ExactConfig, milp_brackets

    inp = keras.Input((1, 1, 2))
    m = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(inp)))
    m.layers[-1].set_weights([np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]], np.float32), np.zeros(3, np.float32)])
    x = np.array([[[[0.6, 0.2]]], [[[0.7, 0.1]]], [[[0.1, 0.9]]]], np.float32)
    y = np.array([0, 0, 0])
    lines = []
    milp_brackets(m, x, y, "linf", ExactConfig(time_limit=5), progress=lines.append)
    assert len(lines) == 3 and all(LINE.match(ln) for ln in lines), lines
    assert "misclassified" in lines[-1].split("|")[-1]  # the last point: class 1 wins already
    assert re.search(r"so far 1 misclassified, 2 optimal, 0 time_limit, 0 no_adversarial_in_domain; "
                     r"median bracket width [\d.e+-]+%", lines[-1]), lines[-1]
