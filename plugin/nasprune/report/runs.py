"""Loading runs: a *run* is a folder with ``results.csv`` and ``summary.json``, as written by
``nasprune search``, ``run``, standard NAS and ``nasprune baseline``.

Runs whose ``summary.json`` says ``"complete": false`` (interrupted while writing their results)
are left out with a warning.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from nasprune.errors import NaspruneError

logger = logging.getLogger("nasprune")

#: The fields a method name can be made of (``--group-by``): properties of :class:`Run`.
GROUP_FIELDS = ("kind", "method", "search_space", "strategy", "order")
RESULTS_FILE, SUMMARY_FILE = "results.csv", "summary.json"


@dataclass
class Run:
    """One run's results table and summary."""

    path: Path
    summary: dict[str, Any]
    table: pd.DataFrame
    label: str = ""
    #: The checkpoint's ``nasprune.json`` as last read, with the (mtime, size) it was read at.
    _checkpoint_info: tuple[tuple[int, int], dict[str, Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def task(self) -> str:
        """The task the run searched on (``custom`` for a user's own data)."""
        return str(self.summary.get("task") or "custom")

    @property
    def method(self) -> str:
        """The search method or baseline that made the run."""
        return str(self.summary.get("method", "?"))

    @property
    def seed(self) -> int:
        """The seed of training and search."""
        return int(self.summary.get("seed", 0) or 0)

    @property
    def data_seed(self) -> int:
        """The seed of the data split: runs on different splits are different instances."""
        data_options = self.summary.get("data_options") or {}
        return int(data_options.get("seed", self.summary.get("data_seed", 0)) or 0)

    @property
    def kind(self) -> str:
        """``baseline``, ``snas`` (standard NAS, one Syne Tune trial per candidate) or ``ws``."""
        if "baseline" in self.summary:
            return "baseline"
        if "syne_tune" in self.summary or "n_workers" in self.summary:
            return "snas"
        return "ws"

    @property
    def search_space(self) -> str:
        """The search space the run searched."""
        return str(self.summary.get("search_space", "?"))

    @property
    def checkpoint_info(self) -> dict[str, Any]:
        """The ``nasprune.json`` of the checkpoint the run started from (empty when unknown or
        unreadable). ``strategy``, ``order`` and ``training_seconds`` all use it, so it is read once
        and kept; it is read again only when the file changed (a resumed training adds epochs)."""
        checkpoint = self.summary.get("checkpoint")
        if not checkpoint:
            return {}
        path = Path(checkpoint) / "nasprune.json"
        try:
            stat = path.stat()
        except OSError:
            return {}
        version = (stat.st_mtime_ns, stat.st_size)
        if self._checkpoint_info is None or self._checkpoint_info[0] != version:
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                info = {}
            self._checkpoint_info = (version, info)
        return self._checkpoint_info[1]

    @property
    def strategy(self) -> str:
        """The super-network training strategy of the checkpoint (``-`` when unknown)."""
        return str(self.checkpoint_info.get("strategy", "-"))

    @property
    def order(self) -> str:
        """``rewired`` when the super-network started from heads and units that
        :mod:`nasprune.rewiring` sorted by importance (``train-supernet --rewire``), else ``natural``."""
        return "rewired" if self.checkpoint_info.get("rewiring") else "natural"

    @property
    def training_seconds(self) -> float:
        """Wall-clock seconds of the checkpoint's training epochs (0 when unknown)."""
        history = self.checkpoint_info.get("history") or []
        return float(sum(float(epoch.get("seconds", 0.0)) for epoch in history))

    def group(self, fields: Sequence[str]) -> str:
        """The method name of this run: its summary's ``label``, else ``fields`` joined by ``/``."""
        if self.summary.get("label"):
            return str(self.summary["label"])
        return "/".join(str(getattr(self, f)) for f in fields)

    def points(self, objectives: Sequence[str]) -> np.ndarray:
        """The ``objectives`` columns of the results as floats (``[rows, objectives]``)."""
        missing = [c for c in objectives if c not in self.table.columns]
        if missing:
            raise NaspruneError(f"{self.path}/results.csv lacks the column(s) {', '.join(missing)}")
        return self.table[list(objectives)].to_numpy(dtype=float)


def load_run(path: str | os.PathLike) -> Run:
    """Read one run folder; :class:`NaspruneError` when a file is missing or unreadable."""
    path = Path(path)
    try:
        summary = json.loads((path / SUMMARY_FILE).read_text())
        table = pd.read_csv(path / RESULTS_FILE)
    except FileNotFoundError as err:
        raise NaspruneError(f"{path} is not a results folder: {err.filename} is missing") from None
    except (ValueError, pd.errors.ParserError) as err:
        raise NaspruneError(f"cannot read the results in {path}: {err}") from None
    if "fidelity" in table.columns:  # multi-fidelity search: only full-fidelity results are compared
        table = table[table["fidelity"] == 1.0].reset_index(drop=True)
    return Run(path, summary, table)


def find_runs(paths: Iterable[str | os.PathLike]) -> list[Run]:
    """Every complete run folder at or below the given paths (sorted, each once)."""
    found: dict[Path, None] = {}
    for root in map(Path, paths):
        if not root.exists():
            raise NaspruneError(f"{root} does not exist")
        candidates = [root] if (root / SUMMARY_FILE).is_file() else []
        candidates += sorted(p.parent for p in root.rglob(SUMMARY_FILE) if p.parent != root)
        for folder in candidates:
            if (folder / RESULTS_FILE).is_file():
                found[folder.resolve()] = None
    if not found:
        raise NaspruneError("no results found: expected folders with results.csv and summary.json")
    complete = []
    for run in map(load_run, found):
        # Results written before completeness was recorded have no "complete": they were whole.
        if run.summary.get("complete", True) is False:
            logger.warning("skipping %s: its results are incomplete (interrupted while writing them)", run.path)
        else:
            complete.append(run)
    if not complete:
        raise NaspruneError("no complete results found: every results folder was interrupted while writing")
    return complete
