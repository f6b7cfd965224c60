"""The journal of a standard-NAS experiment (``trials.jsonl``): what makes a killed search resumable.

:class:`TrialJournal` writes one JSON line per event (the settings, each run of the command, each
trial's start, results and end) and reads them back; :data:`TRIAL_STATUSES` are the ends a trial
can have. Recording a running tuner into the journal and continuing from it is
:mod:`nasprune.snas.resume`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from syne_tune.backend.trial_status import Status
from syne_tune.constants import ST_TUNER_TIME

from nasprune.errors import NaspruneError
from nasprune.files import to_jsonable
from nasprune.search.encoding import Config
from nasprune.spaces import SearchSpace

#: The experiment's journal (see :class:`TrialJournal`).
JOURNAL_FILE = "trials.jsonl"
JOURNAL_FORMAT = "nasprune standard-NAS journal v1"
#: How often (seconds) the journal notes the time spent while no trial reports.
HEARTBEAT_SECONDS = 10.0
#: The final status of a trial (see :func:`trial_status`).
TRIAL_STATUSES = ("completed", "stopped_early", "interrupted", "failed")


def trial_status(epochs_run: int, epochs: int, syne_tune_status: str, scheduler_stopped: bool) -> str:
    """``completed`` (all epochs), ``stopped_early`` (by MO-ASHA), ``interrupted`` (the budget
    ran out, the trial was stopped from outside or its tuner died) or ``failed``."""
    if epochs_run >= epochs:
        return "completed"
    if scheduler_stopped:
        return "stopped_early"
    if syne_tune_status == Status.failed:
        return "failed"
    return "interrupted"


@dataclass
class TrialRecord:
    """One trial as the journal knows it."""

    trial_id: int
    config: Config
    #: Every report, in order, with ``st_tuner_time`` on the experiment's clock.
    results: list[dict[str, Any]] = field(default_factory=list)
    #: One of :data:`TRIAL_STATUSES`; None while it runs (or when its tuner died).
    status: str | None = None
    #: The last line of the trial's error output, for a failed trial.
    error: str | None = None
    #: The trial this one continues (from its checkpoint) after the experiment was interrupted.
    continues: int | None = None
    #: Syne Tune's folder of the trial (``std.err``, ``std.out``, checkpoints).
    path: str | None = None
    #: The Ray nodes the trial ran on, one per attempt (a retry after its node was lost adds
    #: one); empty on the local backend.
    nodes: list[str] = field(default_factory=list)


class TrialJournal:
    """The record of a standard-NAS experiment: ``trials.jsonl`` in its output folder.

    One JSON object per line, appended and flushed to disk as things happen: the settings
    (first line), each run of the command, each trial's start (config), on Ray the node each
    attempt of it ran on, every result it reports, its end (status and error), and now and then
    the time spent. A line cut off by a crash is ignored. Rerunning the command on the same folder continues the experiment from it:
    finished trials are replayed into the new scheduler (so that it learns from them and does
    not suggest them again) and count against the budget (trials and wall-clock time), and
    trials that were running when the tuner died are started again first, from their last
    checkpoint.

    Why not Syne Tune's own checkpoint (``save_tuner=True`` and ``Tuner.load``): it is
    ``tuner.dill``, a pickle of the whole tuner, and unpickling a file runs whatever code the
    file says; nasprune never unpickles anything it reads from disk, as output folders are
    shared and copied around. It is also written only every few results, so a kill loses the
    results since, and it pins the scheduler's Python classes, so a fixed scheduler (such as
    :class:`~nasprune.snas.schedulers.ParetoRankPriority`) could not continue an experiment. The journal is plain data.
    """

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path = path
        self.settings = settings
        self.trials: dict[int, TrialRecord] = {}
        #: Seconds the experiment ran in earlier runs of the command (up to their last line).
        self.elapsed_before = 0.0
        self.num_runs = 0
        self._run_started = time.perf_counter()
        self._last_line = 0.0

    # --- opening ---------------------------------------------------------------------------
    @classmethod
    def open(
        cls, output_dir: Path, settings: dict[str, Any], *, resume: bool = False, overwrite: bool = False
    ) -> "TrialJournal":
        """The experiment in ``output_dir`` (continued), or a new one.

        :param resume: Refuse to start afresh: there must be an experiment to continue.
        :param overwrite: Start afresh, dropping the journal and Syne Tune's folder.
        :raises NaspruneError: The folder holds an experiment with other settings (each
            difference is named), or ``resume`` and there is none, or the journal is corrupt.
        """
        settings = json.loads(json.dumps(to_jsonable(settings)))  # as it reads back
        path = output_dir / JOURNAL_FILE
        if overwrite and resume:
            raise NaspruneError("--resume and --overwrite-output-dir contradict each other; pass one")
        if overwrite or not path.exists():
            if resume:
                raise NaspruneError(
                    f"--resume: {output_dir} holds no standard-NAS experiment ({JOURNAL_FILE}) to continue"
                )
            trial_folders = output_dir / "syne-tune"
            if trial_folders.exists() and not overwrite:
                # Without a journal they cannot be continued, and new trial ids would clash with them.
                raise NaspruneError(
                    f"{trial_folders} holds trials of an experiment nasprune cannot continue (no {JOURNAL_FILE}); "
                    "pass --overwrite-output-dir to replace them, or choose another --output-dir"
                )
            path.unlink(missing_ok=True)
            shutil.rmtree(trial_folders, ignore_errors=True)
            journal = cls(path, settings)
            output_dir.mkdir(parents=True, exist_ok=True)
            journal._append({"event": "settings", "format": JOURNAL_FORMAT, "settings": settings})
            return journal
        journal = cls.read(path)
        differences = [
            f"{_flag(name)} {_show(journal.settings.get(name))} (now {_show(settings.get(name))})"
            for name in sorted(set(settings) | set(journal.settings))
            if settings.get(name) != journal.settings.get(name)
        ]
        if differences:
            raise NaspruneError(
                f"{output_dir} holds a standard-NAS experiment with other settings: {'; '.join(differences)}; "
                "rerun with its settings to continue it, or pass --overwrite-output-dir to start afresh"
            )
        return journal

    @classmethod
    def read(cls, path: Path) -> "TrialJournal":
        """Read a journal (see :meth:`open`)."""
        lines = path.read_text().splitlines()
        events = []
        for number, line in enumerate(lines, 1):
            try:
                events.append(json.loads(line))
            except ValueError:
                if number == len(lines):
                    break  # the last line, cut off when the process was killed
                raise NaspruneError(
                    f"{path} is corrupt at line {number}; pass --overwrite-output-dir to start afresh"
                ) from None
        if not events or events[0].get("format") != JOURNAL_FORMAT:
            raise NaspruneError(
                f"{path} is not a nasprune standard-NAS journal; pass --overwrite-output-dir to start afresh"
            )
        journal = cls(path, events[0]["settings"])
        try:
            for event in events[1:]:
                journal._apply(event)
        except (KeyError, TypeError, ValueError) as err:
            raise NaspruneError(f"{path} is corrupt ({err!r}); pass --overwrite-output-dir to start afresh") from None
        journal.elapsed_before = max((e.get("elapsed", 0.0) for e in events), default=0.0)
        return journal

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "run":
            self.num_runs += 1
        elif kind == "start":
            self.trials[int(event["trial_id"])] = TrialRecord(
                int(event["trial_id"]), event["config"], continues=event.get("continues"), path=event.get("path")
            )
        elif kind == "result":
            self.trials[int(event["trial_id"])].results.append(event["result"])
        elif kind == "placed":
            self.trials[int(event["trial_id"])].nodes.append(str(event["node"]))
        elif kind == "end":
            record = self.trials[int(event["trial_id"])]
            record.status, record.error = event["status"], event.get("error")

    # --- writing ---------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds the experiment has run, over all runs of the command."""
        return self.elapsed_before + time.perf_counter() - self._run_started

    def _append(self, event: dict[str, Any]) -> None:
        event = {**event, "elapsed": self.elapsed()}
        line = json.dumps(to_jsonable(event), allow_nan=False) + "\n"
        # One write of one line, flushed to disk: a crash can only cut off this last line.
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self._last_line = time.perf_counter()
        self._apply(event)

    def start_run(self, budget: dict[str, Any]) -> None:
        """Note a run of the command, with its budget; the experiment's clock goes on from here."""
        self._run_started = time.perf_counter()
        self._append({"event": "run", "pid": os.getpid(), "budget": budget})

    def record_start(self, trial_id: int, config: Config, continues: int | None, path: str) -> None:
        """Note a trial's start: its config, the trial it continues (if any) and its Syne Tune folder."""
        self._append({"event": "start", "trial_id": trial_id, "config": config, "continues": continues, "path": path})

    def record_result(self, trial_id: int, result: dict[str, Any]) -> None:
        """Note a trial's report (without its ``config_`` columns), stamped with the experiment's clock."""
        result = {k: v for k, v in result.items() if not k.startswith("config_")}
        result[ST_TUNER_TIME] = self.elapsed()
        self._append({"event": "result", "trial_id": trial_id, "result": result})

    def record_placement(self, trial_id: int, node: str) -> None:
        """Note that an attempt of a trial started on the Ray node ``node``."""
        self._append({"event": "placed", "trial_id": trial_id, "node": node})

    def record_end(self, trial_id: int, status: str, error: str | None = None) -> None:
        """Note a trial's end: one of :data:`TRIAL_STATUSES`, and the error of a failed one."""
        self._append({"event": "end", "trial_id": trial_id, "status": status, "error": error})

    def heartbeat(self) -> None:
        """Note the time spent, when nothing was written for :data:`HEARTBEAT_SECONDS`."""
        if time.perf_counter() - self._last_line >= HEARTBEAT_SECONDS:
            self._append({"event": "alive"})

    # --- reading ---------------------------------------------------------------------------
    @property
    def next_trial_id(self) -> int:
        """The id the next trial gets: trial ids continue across runs of the command."""
        return max(self.trials, default=-1) + 1

    def experiment_trials(self) -> dict[int, list[TrialRecord]]:
        """Each trial of the experiment, by the id it started with: its record, then the records
        of its continuations after interruptions."""
        chains: dict[int, list[TrialRecord]] = {}
        first_of: dict[int, int] = {}
        for trial_id in sorted(self.trials):
            record = self.trials[trial_id]
            first = first_of.get(record.continues, trial_id) if record.continues is not None else trial_id
            first_of[trial_id] = first
            chains.setdefault(first, []).append(record)
        return chains

    @staticmethod
    def chain_results(chain: list[TrialRecord]) -> list[dict[str, Any]]:
        """The reports of a trial and its continuations, one per epoch (a continuation that had
        nothing left to train repeats its last epoch's report)."""
        by_epoch: dict[int, dict[str, Any]] = {}
        for record in chain:
            for result in record.results:
                by_epoch.setdefault(int(result["epoch"]), result)
        return [by_epoch[epoch] for epoch in sorted(by_epoch)]

    def final_status(self, chain: list[TrialRecord]) -> str:
        """The status of a trial and its continuations (:meth:`experiment_trials`)."""
        return chain[-1].status or "interrupted"  # no end recorded: its tuner died

    def results(self, space: SearchSpace) -> pd.DataFrame:
        """Every report of every trial: one row per epoch, with ``trial_id`` (the id the trial
        started with), ``config_<name>`` and ``st_tuner_time`` on the experiment's clock."""
        rows = []
        for first, chain in self.experiment_trials().items():
            config = {f"config_{name}": chain[0].config[name] for name in space.variable_names}
            rows.extend({**result, "trial_id": first, **config} for result in self.chain_results(chain))
        return pd.DataFrame(rows)


def _flag(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def _show(value: Any) -> str:
    return "(not set)" if value is None else json.dumps(value)
