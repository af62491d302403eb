"""Table 2 and Figure 5 from nearest-neighbour distances."""

import csv
import math

import numpy as np
import pytest

from robcurves.scale import (
    dimensionality,
    distance_summary,
    nearest_neighbour_distances,
    plot_fig5,
    table2_rows,
    write_table2,
)


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    img = (rng.integers(0, 256, (60, 4, 4, 1)) / 255).astype(np.float32)
    y_img = np.arange(60) % 3
    img[7] = img[0]  # labels 1 and 0: a cross-class duplicate, dropped from the table
    tab = rng.random((25, 1, 1, 5), dtype=np.float32)
    y_tab = np.r_[np.zeros(24, int), 1]  # class 1 has a single member
    return {
        "images": nearest_neighbour_distances(img, y_img, device="cpu"),
        "tabular": nearest_neighbour_distances(tab, y_tab, device="cpu"),
    }


def test_distance_summary_drops_small_and_infinite():
    s = distance_summary(np.array([0.0, 5e-5, 0.5, 1.0, 2.0, np.inf]), min_distance=1e-4)
    assert (s["min"], s["median"], s["max"]) == (0.5, 1.0, 2.0)
    assert (s["n_kept"], s["n_dropped"], s["n_no_neighbour"]) == (3, 2, 1)
    empty = distance_summary(np.array([np.inf]))
    assert math.isnan(empty["min"]) and empty["n_no_neighbour"] == 1


def test_dimensionality():
    assert dimensionality((28, 28, 1)) == "28x28x1"
    assert dimensionality((1, 1, 561)) == "561"


def test_table2_rows(results):
    rows = table2_rows(results, min_distance=1e-4)
    img, tab = rows
    assert (img["dataset"], img["samples"], img["classes"], img["dimensionality"]) == ("images", 60, 3, "4x4x1")
    assert img["duplicate_points"] == 2
    for norm in ("linf", "l2", "l1"):
        d = results["images"].distance["inter"][norm]
        kept = d[d >= 1e-4]
        assert img[f"inter_{norm}_dropped"] == 2
        assert img[f"inter_{norm}_min"] == kept.min() and img[f"inter_{norm}_max"] == kept.max()
        assert img[f"inter_{norm}_median"] == np.median(kept)
        assert tab[f"intra_{norm}_no_neighbour"] == 1
    assert tab["dimensionality"] == "5"


def test_write_table2(tmp_path, results):
    paths = [tmp_path / f"table2.{ext}" for ext in ("csv", "md", "tex")]
    rows = write_table2(results, *paths)
    with open(paths[0]) as fh:
        back = list(csv.DictReader(fh))
    assert [r["dataset"] for r in back] == ["images", "tabular"]
    assert float(back[0]["inter_l2_min"]) == rows[0]["inter_l2_min"]
    md = paths[1].read_text()
    assert "| images | 60 | 3 | 4x4x1 |" in md and "intra-class" in md
    assert f"{rows[0]['inter_linf_max']:.2f}" in md
    tex = paths[2].read_text()
    assert r"\begin{tabular}" in tex and r"$4 \times 4 \times 1$" in tex and r"$\ell_\infty$" in tex
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes left nothing behind


def test_plot_fig5_writes_pdf_and_png(tmp_path, results):
    out = [tmp_path / "fig5.pdf", tmp_path / "fig5.png"]
    plot_fig5(results, out, intra=True, thresholds={"linf": [0.1, 0.3, 8 / 255], "l2": []})
    assert out[0].read_bytes()[:4] == b"%PDF"
    assert out[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plot_fig5({}, out)


def test_threshold_labels():
    from robcurves.scale.fig5 import _threshold_label

    assert _threshold_label(0.0313725) == "8/255"
    assert _threshold_label(8 / 255) == "8/255"
    assert _threshold_label(0.1) == "0.1" and _threshold_label(0.3) == "0.3" and _threshold_label(2.0) == "2"
