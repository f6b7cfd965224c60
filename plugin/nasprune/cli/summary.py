"""What the search commands print when they finish: the headline, the Pareto table, the files."""

from __future__ import annotations

from nasprune.results import SearchResult


def print_search_summary(result: SearchResult, headline: str | None = None) -> None:
    """The run's headline, the full model, the Pareto table and the files written."""
    summary = result.summary
    print(headline or (
        f"\n{summary['num_evaluated']} sub-networks evaluated in {summary['search_seconds']:.0f}s; "
        f"hypervolume {summary['hypervolume']:.4f}"
    ))
    full = summary.get("full_model")
    if full:
        print(
            f"full model: valid error {full['valid_error']:.4f}, test error {full['test_error']:.4f}, "
            f"{full['params']:,} parameters"
        )
    print(f"Pareto set ({len(summary['pareto_set'])} sub-networks):")
    print(result.files["pareto_table"].read_text())
    width = max(map(len, result.files))
    for name, path in result.files.items():
        print(f"{name:>{width}}: {path}")
