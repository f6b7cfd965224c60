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
#: A nasprune checkpoint's record (``nasprune.checkpoint.META_FILE``; not imported: it loads torch).
CHECKPOINT_INFO_FILE = "nasprune.json"


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
        unreadable). ``strategy``, ``order`` and the seconds below all use it, so it is read once
        and kept; it is read again only when the file changed (a resumed training adds epochs)."""
        checkpoint = self.summary.get("checkpoint")
        if not checkpoint:
            return {}
        path = Path(checkpoint) / CHECKPOINT_INFO_FILE
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
        """Wall-clock seconds of the checkpoint's own training epochs (0 when unknown)."""
        return _history_seconds(self.checkpoint_info)

    @property
    def rewiring_seconds(self) -> float:
        """Seconds the checkpoint's rewiring took: loading the model importance is measured on,
        measuring it and reordering (0 when not rewired, or rewired before this was recorded)."""
        rewiring = self.checkpoint_info.get("rewiring") or {}
        return float(rewiring.get("seconds") or 0.0)

    @property
    def rewiring_source(self) -> Path | None:
        """The nasprune checkpoint the rewiring measured importance on (the copy fine-tuned first,
        or a ``--rewire-from`` checkpoint); None when not rewired, or the source is not a nasprune
        checkpoint that can be found. Checkpoints written before the source was recorded as an
        absolute path name it relative to the folder the command ran in: it is looked for below each
        folder above the checkpoint (nearest first), then below the working directory."""
        source = (self.checkpoint_info.get("rewiring") or {}).get("source")
        if not source:
            return None
        source = Path(str(source))
        if source.is_absolute():
            candidates = [source]
        else:
            checkpoint = Path(str(self.summary["checkpoint"])).resolve()
            candidates = [folder / source for folder in checkpoint.parents] + [Path.cwd() / source]
        return next((c for c in candidates if (c / CHECKPOINT_INFO_FILE).is_file()), None)

    @property
    def rewiring_source_training_seconds(self) -> float:
        """Training seconds in the history of :attr:`rewiring_source` (0 when there is none, e.g. a
        hub model with a trained head or ``--model`` itself)."""
        source = self.rewiring_source
        if source is None:
            return 0.0
        try:
            info = json.loads((source / CHECKPOINT_INFO_FILE).read_text())
        except (OSError, ValueError):
            return 0.0
        return _history_seconds(info)

    @property
    def seconds_before_search(self) -> float:
        """Everything the checkpoint cost before the search's first evaluation, as far as it was
        recorded: the training of the rewiring source (:attr:`rewiring_source_training_seconds`),
        the rewiring (:attr:`rewiring_seconds`) and the checkpoint's own epochs
        (:attr:`training_seconds`). ``nasprune compare``'s time axis starts each run here. Loading
        models and data between these steps is not recorded, so it is not charged."""
        return self.rewiring_source_training_seconds + self.rewiring_seconds + self.training_seconds

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


def _history_seconds(info: dict[str, Any]) -> float:
    """The summed ``seconds`` of the epochs in a ``nasprune.json``'s history."""
    history = info.get("history") or []
    return float(sum(float(epoch.get("seconds", 0.0)) for epoch in history))


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
