"""The Snakemake report of the tiny run, opened in a real browser (headless Chromium).

``snakemake --report results/report.html`` writes one self-contained page: a React app
whose results (every figure and table, each with its caption) are embedded as data URIs.
The test checks the embedded data first (every output marked for the report is there,
with a caption that names its config entry), then loads the page in Chromium with a
small probe appended that drives the app the way a reader's clicks do: it opens every
category and subcategory, shows every image in the app's own viewer and waits until the
browser has decoded it. The probe's findings come back through ``--dump-dom``; a
screenshot of a figure on display must not be blank.

Chromium comes from Debian (``apt-get install chromium``); the test installs it when it
is missing and skips, with the reason, only where that is impossible (not root, no
package access).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars",
]

# What the tiny config must put into the report: file name -> (category, subcategory).
EXPECTED = {
    "curves_tiny.png": ("Figures", "Robustness curves"),
    "curves_tiny.pdf": ("Figures", "Robustness curves"),
    "fig1_toy.png": ("Figures", "Fig. 1: toy illustration"),
    "fig1_toy.pdf": ("Figures", "Fig. 1: toy illustration"),
    "table1_robust_error.csv": ("Tables", "Table 1: point-wise robust error"),
    "crossings.csv": ("Tables", "Crossings of robustness curves"),
    "gallery_tiny.png": ("Figures", "Gallery of minimal adversarial examples"),
    "gallery_tiny.pdf": ("Figures", "Gallery of minimal adversarial examples"),
    "exact_vs_approx.png": ("Figures", "Exact vs. approximate"),
    "exact_gap_statistics.csv": ("Tables", "Exact vs. approximate: gap statistics"),
}

# Appended to a copy of the report. It waits for the app, visits every category and
# subcategory view, shows every image result in the app's viewer and records whether
# the browser decoded it, then leaves the first PNG figure on screen for the screenshot.
PROBE = r"""
<script id="robcurves-probe">
(async function () {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const out = { app: false, views: {}, images: {}, errors: [] };
  window.addEventListener("error", (ev) => out.errors.push(String(ev.message)));
  try {
    for (let i = 0; i < 200 && (typeof app === "undefined" || !document.querySelector("#app").children.length); i++) {
      await sleep(50);
    }
    out.app = typeof app !== "undefined" && document.querySelector("#app").children.length > 0;
    // As a reader clicks: results menu -> category -> subcategory, each view built anew.
    const show = async (view) => { app.setView(view); await sleep(200); return document.querySelector("#app").innerText; };
    for (const cat of Object.keys(categories)) {
      await show({ navbarMode: "menu" });
      out.views[cat] = await show({ navbarMode: "category", category: cat });
      for (const sub of Object.keys(categories[cat])) {
        await show({ navbarMode: "menu" });
        await show({ navbarMode: "category", category: cat });
        out.views[cat + " / " + sub] = await show({ navbarMode: "subcategory", category: cat, subcategory: sub });
      }
    }
    let first = null;
    for (const [path, entry] of Object.entries(results)) {
      if (!entry.mime_type.startsWith("image/")) continue;
      first = first || [path, entry];
      app.setView({ content: "img", contentPath: entry.data_uri, resultPath: path });
      let img = null;
      for (let i = 0; i < 100; i++) {
        await sleep(50);
        img = Array.from(document.querySelectorAll("#app img")).find((el) => el.getAttribute("src") === entry.data_uri);
        if (img && img.complete) break;
      }
      out.images[entry.name] = img ? { complete: img.complete, width: img.naturalWidth, height: img.naturalHeight } : null;
      app.setView({ navbarMode: "resultinfo", resultPath: path });
      await sleep(200);
      out.views["info: " + entry.name] = document.querySelector("#app").innerText;
    }
    if (first) {
      app.setView({ navbarMode: "menu", content: "img", contentPath: first[1].data_uri, resultPath: first[0] });
      await sleep(300);
    }
  } catch (err) {
    out.errors.push(String(err && err.stack || err));
  }
  const pre = document.createElement("pre");
  pre.id = "robcurves-probe-result";
  pre.style.display = "none";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


CAPTIONS = Path(__file__).resolve().parents[1] / "workflow" / "report"


def _render_caption(name: str, snakemake) -> str:
    """A caption rendered as Snakemake's report renders it (Jinja, then reStructuredText),
    but strict: any reStructuredText warning is an error."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    text = Environment(trim_blocks=True, lstrip_blocks=True).from_string((CAPTIONS / name).read_text()).render(
        snakemake=snakemake)
    body = publish_parts(text, writer="html", settings_overrides={"halt_level": 2, "report_level": 2})["body"]
    return html.unescape(re.sub(r"<[^>]+>", "", body))


@pytest.mark.parametrize("config_name", ["paper.yaml", "config.yaml"])
def test_every_caption_renders_for_the_shipped_configs(config_name, tmp_path):
    """Fast, without a run: each caption of workflow/report/ renders cleanly for the
    shipped configs, and says what made its output."""
    from types import SimpleNamespace as NS

    import yaml

    from robcurves.config import validate_config

    with open(CAPTIONS.parents[1] / "config" / config_name, encoding="utf-8") as fh:
        cfg = validate_config(yaml.safe_load(fh))
    table = tmp_path / "table.md"
    table.write_text("| model | R |\n|---|---|\n| a | 0.5 |\n")
    out = [str(tmp_path / "table.csv"), str(table), str(tmp_path / "table.tex")]
    curves = cfg["figures"].get("robustness_curves", {})
    cases = {
        "fig1_toy.rst": NS(params=NS(seed=cfg["seed"]), config=cfg, wildcards=NS(), input=[], output=[]),
        "table1.rst": NS(params=NS(spec=cfg["tables"]["robust_error"]), config=cfg, wildcards=NS(),
                         input=["c.json"] * 3, output=out),
        "crossings.rst": NS(params=NS(spec=cfg["tables"]["crossings"]), config=cfg, wildcards=NS(),
                            input=["c.json"] * 3, output=out),
        "table2.rst": NS(params=NS(datasets=list(cfg["datasets"]), min_distance=1e-4), config=cfg,
                         wildcards=NS(), input=[], output=out),
        "fig5.rst": NS(params=NS(datasets=list(cfg["datasets"]), min_distance=1e-4, intra=True,
                                 thresholds={"linf": [0.1, 0.3], "l2": []}), config=cfg, wildcards=NS(),
                       input=[], output=[]),
        "exact_vs_approx.rst": NS(params=NS(labels=["m (linf)"], tolerance={"rel": 1e-4, "abs": 1e-6}),
                                  config={**cfg, "exact": {"models": ["m"], "norms": ["linf"], "n_points": 100}},
                                  wildcards=NS(), input=[], output=[]),
        "workflow.rst": NS(config=cfg),
    }
    for name, spec in curves.items():
        cases[f"robustness_curves.rst:{name}"] = NS(params=NS(spec=spec), config=cfg, wildcards=NS(name=name),
                                                   input=[], output=[])
        cases[f"gallery.rst:{name}"] = NS(params=NS(spec=spec, quantiles=[0.1, 0.5, 0.9]), config=cfg,
                                          wildcards=NS(name=name), input=[], output=[])
    assert {c.split(":")[0] for c in cases} == {p.name for p in CAPTIONS.glob("*.rst")}
    for case, smk in cases.items():
        text = _render_caption(case.split(":")[0], smk)
        assert ("Made by" in text) or case == "workflow.rst", f"{case}: {text[:400]}"
        assert "{{" not in text and "{%" not in text, f"{case}: unrendered template: {text[:400]}"
        if case.startswith(("robustness_curves.rst:", "gallery.rst:")):
            spec = curves[case.split(":")[1]]
            assert all(m in text for m in spec["models"]), f"{case}: not every model is named"
            assert f"figures.robustness_curves.{case.split(':')[1]}" in text
        flat = " ".join(text.split())
        if case.startswith("robustness_curves.rst:") or case in ("table1.rst", "crossings.rst"):
            text = flat
            # What the numbers are: attack curves bound the true robust error from below,
            # and the intervals cover the sampling of the test points only.
            assert "lower bound of the true robust error" in text or "bound the true robust error from below" in text
            assert "sampling of the test points only" in text, f"{case}: {text[:600]}"
        if case in ("crossings.rst", "exact_vs_approx.rst"):
            text = flat
        if case == "crossings.rst":
            assert "family-wise error over all pairs and norms is at most 0.05" in text
            assert "Bonferroni" in text and "97.5" not in text
        if case == "exact_vs_approx.rst":
            assert "exact_gap_statistics.csv" in text and ".tsv" not in text
            assert "optimal means upper − lower ≤ 0.0001 × upper + 1e-06" in text
            assert "never counted as solved" in text
        if case in ("table1.rst", "crossings.rst", "table2.rst"):
            assert "| a | 0.5 |" in text, f"{case}: the table is not included"
        if case == "workflow.rst":
            assert all(m in text for m in cfg["models"])


def _chromium() -> str:
    """The Chromium binary; installed from Debian if missing; skip only if that is impossible."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("Chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            pytest.skip(f"Chromium could not be installed ({' '.join(cmd)}): {proc.stderr.strip()[-500:]}")
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("apt-get installed chromium, but no chromium binary is on PATH")
    return path


def _run_chromium(binary: str, profile: Path, *args: str, attempts: int = 3) -> subprocess.CompletedProcess:
    """Chromium with a fresh profile. Headless Chromium now and then never ends a
    --virtual-time-budget run (seen here about once in ten on a loaded machine); such a
    run is killed after two minutes and tried again."""
    for attempt in range(attempts):
        user_dir = profile.with_name(f"{profile.name}-{attempt}")
        user_dir.mkdir(parents=True)
        cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={user_dir}", *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            continue
    pytest.fail(f"Chromium did not finish in {attempts} tries of two minutes: {' '.join(cmd)}")


def _embedded(page: str, var: str):
    """The JSON of ``var <name> = {...};`` in the report's script of that id."""
    m = re.search(rf'<script id="{var}">\s*var \w+ = (.*?);\s*</script>', page, re.S)
    assert m, f"the report has no embedded '{var}' data"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def report(tiny_run, snakemake_runner) -> Path:
    path = tiny_run / "results" / "report.html"
    proc = snakemake_runner(tiny_run, "--report", str(path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert path.is_file() and path.stat().st_size > 100_000
    return path


@pytest.mark.slow
def test_report_embeds_every_figure_and_table_with_a_caption(report, tiny_run):
    page = report.read_text(encoding="utf-8")
    results = _embedded(page, "results")
    categories = _embedded(page, "categories")
    by_name = {entry["name"]: (path, entry) for path, entry in results.items()}
    # Every figure (PDF and PNG) and every table (its CSV) of the run is in the report.
    made = {p.name for p in (tiny_run / "results" / "figures").iterdir() if p.suffix in (".pdf", ".png")}
    made |= {p.name for p in (tiny_run / "results" / "tables").glob("*.csv")}
    assert set(EXPECTED) <= made, f"the tiny run did not make {sorted(set(EXPECTED) - made)}"
    # Outputs of stages whose rules do not mark them for the report yet (the lead's list).
    rules = Path(__file__).resolve().parents[1] / "rules"
    pending = set()
    if "report(" not in (rules / "distances.smk").read_text():
        pending |= {"table2.csv", "fig5_scale.pdf", "fig5_scale.png"}
    if (rules / "exact.smk").is_file() and "report(" not in (rules / "exact.smk").read_text():
        pending |= {"exact_vs_approx.pdf", "exact_vs_approx.png"}
    assert made - pending <= set(by_name), f"not in the report: {sorted(made - pending - set(by_name))}"
    for name, (cat, sub) in EXPECTED.items():
        assert by_name[name][0] in categories[cat][sub], f"{name} is not under {cat} / {sub}"
    for name, (path, entry) in by_name.items():
        kind, data = entry["data_uri"].split(",", 1)
        raw = base64.b64decode(data)
        # The embedded bytes are the workflow's output, byte for byte.
        assert raw == (tiny_run / path).read_bytes(), f"{name}: embedded copy differs from {path}"
        caption = html.unescape(re.sub(r"<[^>]+>", " ", entry["caption"]))
        assert "Made by" in caption, f"{name}: caption does not say which config made it: {caption[:300]}"
        if name.startswith("curves_"):
            assert "figures.robustness_curves.tiny" in caption and "tiny_st" in caption
            assert "Dvoretzky" in caption
        if name.startswith("table1"):
            assert "tables.robust_error" in caption
            assert "robust_error" in caption and "tiny_st" in caption  # the table itself, included
        if name.startswith("crossings"):
            assert "tables.crossings" in caption
    # The start page holds the whole validated config that made the run.
    start = html.unescape(re.sub(r"<[^>]+>", "", _embedded(page, "workflow-desc")))
    assert "'label': 'ST (tiny)'" in start and "'n_points': 12" in start, start[:2000]


@pytest.mark.slow
def test_report_renders_every_figure_in_chromium(report, tmp_path):
    binary = _chromium()
    page = report.read_text(encoding="utf-8")
    results = _embedded(page, "results")
    images = {e["name"] for e in results.values() if e["mime_type"].startswith("image/")}
    assert {n for n in EXPECTED if n.endswith(".png")} <= images
    where = {path: (cat, sub) for cat, subs in _embedded(page, "categories").items()
             for sub, paths in subs.items() for path in paths}

    probed = tmp_path / "report_probe.html"
    i = page.rindex("</body>")
    probed.write_text(page[:i] + PROBE + page[i:], encoding="utf-8")
    url = probed.as_uri()

    proc = _run_chromium(binary, tmp_path / "profile-dom", "--virtual-time-budget=60000", "--dump-dom", url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = re.search(r'<pre id="robcurves-probe-result"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    assert m, "the probe did not finish: the report's app did not run in Chromium\n" + proc.stdout[-2000:]
    found = json.loads(html.unescape(m.group(1)))
    assert found["app"], "the report's app did not render"
    assert found["errors"] == [], found["errors"]

    for name in images:
        img = found["images"].get(name)
        assert img and img["complete"] and img["width"] > 200 and img["height"] > 100, f"{name}: {img}"
    # Each subcategory view lists its results by their labels (figure or table name, format).
    for path, entry in results.items():
        cat, sub = where[path]
        view = found["views"][f"{cat} / {sub}"]
        for value in entry["labels"].values():
            assert value in view, f"{entry['name']}: label {value!r} is not shown in the {cat} / {sub} view:\n{view[:500]}"
        assert sub in found["views"][cat], f"the {cat} view does not list {sub}"
    for name in images:
        info = found["views"][f"info: {name}"]
        assert "Made by" in info, f"{name}: the result view shows no caption"

    shot = tmp_path / "report.png"
    proc = _run_chromium(binary, tmp_path / "profile-shot", "--virtual-time-budget=60000",
                         "--window-size=1400,1000", f"--screenshot={shot}", url)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-3000:]
    from PIL import Image

    # The probe leaves a figure on display: the content area right of the app's menu
    # must show it (many colours, a fair share of non-white pixels), not a blank page.
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (1000, 1400)
    content = image[:, 300:].reshape(-1, 3)
    colours = len(np.unique(content, axis=0))
    non_white = float(np.mean(content.min(axis=1) < 240))
    assert colours > 50 and non_white > 0.02, f"the screenshot looks blank: {colours} colours, {non_white:.1%} non-white"
