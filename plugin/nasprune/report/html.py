"""One self-contained HTML page of results: ``report.html``.

The page shows, for each run folder (``results.csv`` + ``summary.json``, as written by ``run``,
``search``, ``baseline`` and ``nas``), the front plot, the Pareto table and the recommended model
with its ``nasprune export`` command; for each ``nasprune compare`` output folder
(``comparison.json``), its tables and plots. Plots are embedded as base64 PNG and the style sheet
is inline, so the file opens in a browser anywhere, offline, and can be mailed as it is.

The template is Jinja2's (installed with torch) with HTML escaping on.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from nasprune import choosing
from nasprune.errors import NaspruneError
from nasprune.files import write_text_atomic
from nasprune.model_names import display_model_name
from nasprune.report.runs import RESULTS_FILE, SUMMARY_FILE, Run, load_run
from nasprune.results import pareto_table

#: The file a comparison folder is recognised by (written last by :func:`nasprune.report.compare`).
COMPARISON_FILE = "comparison.json"
#: The name ``run`` and ``compare`` give the page in their output folder.
REPORT_FILE = "report.html"
#: The tables of a comparison folder, in the order shown, with their captions.
COMPARISON_TABLES = {
    "hypervolume.csv": "Hypervolume (mean ± std over seeds) and average rank",
    "compression.csv": "Smallest relative size within 100/95/90% of the unpruned model's score",
    "ranks.csv": "Average rank by hypervolume, 95% bootstrap CI",
}


@dataclass
class Figure:
    """A plot as the page embeds it."""

    caption: str
    png: bytes

    @property
    def data_uri(self) -> str:
        """The PNG as a ``data:`` URI (no file beside the page)."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Table:
    """A table as the page shows it."""

    caption: str
    html: str
    css_id: str


@dataclass
class Section:
    """One results folder on the page."""

    title: str
    path: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    recommendation: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


# --- sections ---------------------------------------------------------------------------------
def _figure_png(figure: Any) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


#: Tables with more columns than this get the smaller type of ``table.wide``, so that they fit the page.
WIDE_TABLE_COLUMNS = 9


def _html_table(frame: pd.DataFrame, css_id: str) -> str:
    formatted = frame.copy()
    for column in formatted.columns:
        if pd.api.types.is_float_dtype(formatted[column]):
            formatted[column] = formatted[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    classes = ["results"] + (["wide"] if len(formatted.columns) > WIDE_TABLE_COLUMNS else [])
    table = formatted.to_html(index=False, escape=True, border=0, classes=classes, table_id=css_id, na_rep="")
    # Headers such as "units_per_layer" may break after an underscore, not in the middle of a word.
    return re.sub(r"<th>([^<]*)</th>", lambda m: "<th>" + m.group(1).replace("_", "_<wbr>") + "</th>", table)


def run_section(run: Run) -> Section:
    """The section of one run folder: facts, the front plot, the Pareto table, the recommendation."""
    from nasprune.plots import front_figure  # matplotlib: loaded only when a page is made

    summary = run.summary
    objectives = list(summary.get("objectives") or ["valid_error", "relative_params"])
    title = f"{run.task}: {run.method} on '{run.search_space}'"
    section = Section(title, str(run.path))
    full = summary.get("full_model") if isinstance(summary.get("full_model"), dict) else {}
    metric = choosing.metric_name(summary)
    facts = [
        ("model", display_model_name(summary["model"]) if summary.get("model") else "?"),
        ("checkpoint", str(summary.get("checkpoint", "-"))),
        ("objectives", ", ".join(objectives)),
        ("sub-networks evaluated", str(summary.get("num_evaluated", len(run.table)))),
        ("hypervolume", f"{summary['hypervolume']:.4f}" if isinstance(summary.get("hypervolume"), (int, float)) else "-"),
    ]
    if full:
        for split in ("valid", "test"):
            value = full.get(f"{split}_error")
            if isinstance(value, (int, float)):
                facts.append((f"full model, {'validation' if split == 'valid' else 'test'} {metric}", f"{1 - value:.2%}"))
        if isinstance(full.get("params"), (int, float)):
            facts.append(("full model, parameters", f"{int(full['params']):,}"))
    section.facts = facts
    # As pareto.png: a multi-fidelity search's cheaper evaluations are not points of the front.
    shown = run.table[run.table["fidelity"] == 1.0] if "fidelity" in run.table.columns else run.table
    section.figures.append(Figure(
        "Left: every evaluated sub-network and the Pareto front on validation. Right: the test error of the "
        "Pareto set. The star is the full model, the ring the recommended point.",
        _figure_png(front_figure(shown, objectives[1], objectives[0], title, summary=summary)),
    ))
    section.tables.append(Table("Pareto set (the pick column is what export --pick takes)",
                                _html_table(pareto_table(run.table, summary), "pareto-set"), "pareto-set"))
    recommended = choosing.recommendation(run.table, summary, run.path)
    if recommended is None:
        section.notes.append(
            f"No point is recommended: none of the Pareto points is within "
            f"{choosing.RECOMMENDATION_TOLERANCE * 100:.0f} point of the full model's validation {metric}."
        )
    else:
        row = recommended["row"]
        section.recommendation = {
            "pick": recommended["pick"],
            "trial_id": recommended["trial_id"],
            "rule": recommended["rule"],
            "measured": f"validation {metric} {1 - float(row['valid_error']):.2%}, {recommended['shares']}",
            "command": recommended["command"],
        }
    return section


def _caption_of(png: Path) -> str:
    stem = png.stem
    for prefix, text in (
        ("test_error_vs_size_", "Test error against size: median attainment surface over seeds, band from the best to the worst seed"),
        ("error_vs_size_", "Validation error against size: median attainment surface over seeds, band from the best to the worst seed"),
        ("hypervolume_over_time_", "Hypervolume over wall-clock time: median over seeds, band from the worst to the best seed"),
    ):
        if stem.startswith(prefix):
            return f"{text} ({stem[len(prefix):]})"
    return "Average rank by hypervolume (1 = best), 95% bootstrap CI" if stem == "ranks" else stem


def comparison_section(folder: Path) -> Section:
    """The section of a ``nasprune compare`` output folder: its tables and plots."""
    try:
        settings = json.loads((folder / COMPARISON_FILE).read_text())
    except (OSError, ValueError) as err:
        raise NaspruneError(f"cannot read {folder / COMPARISON_FILE}: {err}") from None
    normalisation = settings.get("normalisation") or {}
    section = Section(f"Comparison of {len(settings.get('runs', []))} runs", str(folder))
    section.facts = [
        ("objectives", ", ".join(normalisation.get("objectives", []))),
        ("normalisation", f"{normalisation.get('kind', '?')}, reference point {normalisation.get('reference_point', '?')}"),
        ("methods named by", ", ".join(settings.get("group_by", []))),
    ]
    for name, caption in COMPARISON_TABLES.items():
        if (folder / name).is_file():
            css_id = Path(name).stem
            section.tables.append(Table(caption, _html_table(pd.read_csv(folder / name), css_id), css_id))
    order = ("error_vs_size_", "test_error_vs_size_", "hypervolume_over_time_", "ranks")
    pngs = sorted(folder.glob("*.png"), key=lambda p: (next((i for i, o in enumerate(order) if p.stem.startswith(o)), 9), p.name))
    section.figures = [Figure(_caption_of(png), png.read_bytes()) for png in pngs]
    return section


def find_sections(paths: Iterable[str | os.PathLike]) -> list[Section]:
    """A section for every comparison folder and every run folder at or below ``paths``."""
    sections: list[Section] = []
    seen: set[Path] = set()
    for root in map(Path, paths):
        if not root.exists():
            raise NaspruneError(f"{root} does not exist")
        comparisons = [root] if (root / COMPARISON_FILE).is_file() else sorted(p.parent for p in root.rglob(COMPARISON_FILE))
        runs = [root] if (root / SUMMARY_FILE).is_file() else sorted(p.parent for p in root.rglob(SUMMARY_FILE))
        for folder in comparisons:
            if folder.resolve() not in seen:
                seen.add(folder.resolve())
                sections.append(comparison_section(folder))
        for folder in runs:
            if folder.resolve() in seen or not (folder / RESULTS_FILE).is_file():
                continue
            seen.add(folder.resolve())
            run = load_run(folder)
            if run.summary.get("complete", True) is False:
                continue  # interrupted while writing: not a result to show
            sections.append(run_section(run))
    if not sections:
        raise NaspruneError(
            "no results found: expected run folders (results.csv and summary.json) or nasprune compare "
            "output folders (comparison.json)"
        )
    return sections


# --- the page ---------------------------------------------------------------------------------
TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1.5em; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.path, .generated { color: #666; font-size: 0.9em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1.2em; }
dl.facts dt { color: #555; }
dl.facts dd { margin: 0; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
figcaption { color: #444; font-size: 0.9em; }
.table-wrap { overflow-x: auto; margin: 0.5em 0 1.5em; }
/* Tables fit the page: long cells (per-layer lists, notes) wrap at their spaces, headers after an
   underscore; the scroll bar of .table-wrap is only the last resort. */
table.results { border-collapse: collapse; font-size: 0.85em; max-width: 100%; }
table.results.wide { font-size: 0.75em; }
table.results th, table.results td { padding: 0.25em 0.7em; border-bottom: 1px solid #e3e3e3; text-align: right;
                                     white-space: normal; vertical-align: top; }
table.results.wide th, table.results.wide td { padding: 0.2em 0.45em; }
table.results th { background: #f3f3f3; }
.recommended { background: #eef7ee; border-left: 4px solid #2ca02c; padding: 0.6em 1em; margin: 1em 0; }
pre.command { background: #272822; color: #f8f8f2; padding: 0.7em 1em; overflow-x: auto; white-space: pre-wrap; }
.note { color: #8a5a00; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="generated">Made by nasprune {{ version }} on {{ generated }}.</p>
{% for section in sections %}
<section class="results-section">
<h2>{{ section.title }}</h2>
<p class="path">{{ section.path }}</p>
{% if section.facts %}<dl class="facts">{% for name, value in section.facts %}<dt>{{ name }}</dt><dd>{{ value }}</dd>{% endfor %}</dl>{% endif %}
{% if section.recommendation %}
<div class="recommended">
<strong>Recommended model: pick {{ section.recommendation.pick }}</strong> (trial {{ section.recommendation.trial_id }}):
{{ section.recommendation.measured }}.<br>
Chosen as {{ section.recommendation.rule }}.
{% if section.recommendation.command %}
<p>Export it with:</p>
<pre class="command">{{ section.recommendation.command }}</pre>
{% else %}
<p class="note">Its weights are not in the checkpoint (each trial trained its own, or the baseline fine-tuned them), so it cannot be cut out with nasprune export.</p>
{% endif %}
</div>
{% endif %}
{% for note in section.notes %}<p class="note">{{ note }}</p>{% endfor %}
{% for figure in section.figures %}
<figure><img class="plot" src="{{ figure.data_uri }}" alt="{{ figure.caption }}"><figcaption>{{ figure.caption }}</figcaption></figure>
{% endfor %}
{% for table in section.tables %}
<h3>{{ table.caption }}</h3>
<div class="table-wrap">{{ table.html | safe }}</div>
{% endfor %}
</section>
{% endfor %}
</body>
</html>
"""


def render_report(sections: Sequence[Section], title: str = "nasprune report") -> str:
    """The page of ``sections`` as one HTML string (no external references)."""
    import jinja2  # installed with torch; imported here since only the report needs it

    import nasprune

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return environment.from_string(TEMPLATE).render(
        title=title, sections=sections, version=nasprune.__version__, generated=generated,
    )


def write_report(
    paths: Sequence[str | os.PathLike], output: str | os.PathLike, title: str = "nasprune report"
) -> Path:
    """Write the page of every results folder at or below ``paths`` to ``output`` (atomically)."""
    return write_text_atomic(render_report(find_sections(paths), title), output)
