"""What the search commands print when they finish: the headline, the Pareto table, the files."""

from __future__ import annotations

from nasprune.results import SearchResult


def print_search_summary(result: SearchResult, headline: str | None = None) -> None:
    """The run's headline, then ``pareto.md`` (the full model, the Pareto table with its ``pick``
    column, the recommended point and the ``nasprune export`` line that cuts it out), then the files."""
    summary = result.summary
    print(headline or (
        f"\n{summary['num_evaluated']} sub-networks evaluated in {summary['search_seconds']:.0f}s; "
        f"hypervolume {summary['hypervolume']:.4f}"
    ))
    print(result.files["pareto_table"].read_text())
    width = max(map(len, result.files))
    for name, path in result.files.items():
        print(f"{name:>{width}}: {path}")
