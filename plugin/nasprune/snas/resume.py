"""Continuing a standard-NAS experiment: the tuner's side of the :class:`~nasprune.snas.journal.TrialJournal`.

While the tuner runs, :class:`JournalCallback` and :func:`record_ends` write each trial's start,
results and end into the journal. When the command is run again, :func:`recover_unread_reports`
and :func:`replay` tell a new scheduler what the earlier runs did, and the backend
(:class:`ContinuingTrials`: :class:`ContinuingLocalBackend`, or the Ray backend) continues their
trial ids and restarts unfinished trials from their checkpoints.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from syne_tune.backend import LocalBackend
from syne_tune.backend.trial_status import Status, Trial
from syne_tune.optimizer.scheduler import SchedulerDecision, TrialScheduler
from syne_tune.tuner_callback import TunerCallback

from nasprune.search.encoding import Config
from nasprune.snas import storage
from nasprune.snas.journal import TrialJournal, trial_status
from nasprune.snas.protocol import CHECKPOINT_POINTER, CHECKPOINT_PROGRESS


class ContinuingTrials:
    """What a Syne Tune ``TrialBackend`` of a resumable experiment adds: trial ids continue after
    those of earlier runs (all trials of the experiment share one folder), and a trial that
    continues an interrupted one starts from that trial's checkpoint when there is one.

    Mixed into :class:`ContinuingLocalBackend` and the Ray backend
    (:class:`nasprune.snas.ray_backend.RayTrialBackend`), before the backend class.
    """

    trial_ids: list[int]

    def __init__(self, *args: Any, first_trial_id: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.first_trial_id = first_trial_id
        #: new trial id -> the id of the interrupted trial it continues
        self.continues: dict[int, int] = {}

    def new_trial_id(self) -> int:
        return self.first_trial_id + len(self.trial_ids)

    def start_trial(self, config: dict[str, Any], checkpoint_trial_id: int | None = None) -> Any:
        if checkpoint_trial_id is not None:
            self.continues[self.new_trial_id()] = checkpoint_trial_id
        return super().start_trial(config, checkpoint_trial_id)  # type: ignore[misc]


class ContinuingLocalBackend(ContinuingTrials, LocalBackend):
    """A ``LocalBackend`` for a resumable experiment (:class:`ContinuingTrials`)."""

    def copy_checkpoint(self, src_trial_id: int, tgt_trial_id: int) -> None:
        if self.checkpoint_trial_path(src_trial_id).is_dir():  # none when it died before its first epoch
            super().copy_checkpoint(src_trial_id, tgt_trial_id)


class JournalCallback(TunerCallback):
    """Writes each trial's start, every result and its end into the :class:`TrialJournal` as
    they happen, so that a killed tuner leaves a complete record of what it did."""

    def __init__(self, journal: TrialJournal, backend: Any, epochs: int):
        self.journal = journal
        self.backend = backend
        self.epochs = epochs
        self.tuner: Any = None

    def on_tuning_start(self, tuner: Any) -> None:
        self.tuner = tuner

    def on_start_trial(self, trial: Trial) -> None:
        self.journal.record_start(
            trial.trial_id, trial.config, self.backend.continues.get(trial.trial_id),
            str(self.backend.trial_path(trial.trial_id)),
        )

    def on_trial_result(self, trial: Trial, status: str, result: dict[str, Any], decision: str) -> None:
        self.journal.record_result(trial.trial_id, result)

    def on_loop_end(self) -> None:
        record_ends(self.journal, self.tuner, self.epochs, running_too=False)
        self.journal.heartbeat()


def checkpointed_reports(checkpoint_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The reports a trial saved with its last checkpoint (a folder or a storage URI); [] when it
    has none (or a damaged one, which the worker itself refuses when it resumes)."""
    folder = str(checkpoint_dir)
    try:
        name = json.loads(storage.read_text(storage.join(folder, CHECKPOINT_POINTER)))["folder"]
        progress = storage.read_text(storage.join(folder, Path(str(name)).name, CHECKPOINT_PROGRESS))
        reports = json.loads(progress)["reports"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [r for r in reports if isinstance(r, dict) and "epoch" in r] if isinstance(reports, list) else []


def recover_unread_reports(journal: TrialJournal) -> None:
    """Journal the epochs that trials left unfinished had checkpointed but their tuner had not
    read yet when it died (a trial saves its checkpoint, then reports): the trial continues
    after them and will not report them again."""
    for chain in journal.experiment_trials().values():
        last = chain[-1]
        if last.status is not None or last.path is None:
            continue
        known = {int(result["epoch"]) for result in journal.chain_results(chain)}
        for report in checkpointed_reports(storage.join(last.path, "checkpoints")):
            if int(report["epoch"]) not in known:
                journal.record_result(last.trial_id, report)


def replay(journal: TrialJournal, scheduler: TrialScheduler) -> list[tuple[Config, int]]:
    """Tell a new ``scheduler`` about the trials of earlier runs, as the tuner told the old one.

    :return: ``(config, trial id)`` of the trials left unfinished (no end recorded: the tuner
        died), to start again from their checkpoints.
    """
    unfinished = []
    for chain in journal.experiment_trials().values():
        last = chain[-1]
        if last.status is None:
            unfinished.append((last.config, last.trial_id))
            continue
        trial = Trial(trial_id=chain[0].trial_id, config=chain[0].config, creation_time=datetime.now())
        scheduler.on_trial_add(trial)
        decision = SchedulerDecision.CONTINUE
        results = journal.chain_results(chain)
        for result in results:
            decision = scheduler.on_trial_result(trial, result)
        if decision == SchedulerDecision.STOP:
            scheduler.on_trial_remove(trial)
        elif last.status == "completed":
            scheduler.on_trial_complete(trial, results[-1])
        else:  # failed, or interrupted by the budget: no verdict on the config
            scheduler.on_trial_error(trial)
    return unfinished


def record_ends(journal: TrialJournal, tuner: Any, epochs: int, running_too: bool = True) -> None:
    """Write the end of the trials of this run that ended into the journal (with ``running_too``
    every trial: the tuner stopped the running ones): the status, and the last line of the error
    output of a failed trial (``std.err`` in its Syne Tune folder)."""
    seen = tuner.tuning_status.last_trial_status_seen if tuner.tuning_status is not None else {}
    for trial_id in tuner.trial_backend.trial_ids:
        record = journal.trials.get(trial_id)
        if record is None or record.status is not None:
            continue
        if not running_too and seen.get(trial_id) not in (Status.completed, Status.failed, Status.stopped):
            continue
        epochs_run = max((int(r["epoch"]) for r in record.results), default=0)
        status = trial_status(epochs_run, epochs, seen.get(trial_id, ""), trial_id in tuner.trials_scheduler_stopped)
        journal.record_end(trial_id, status, last_error_line(record.path) if status == "failed" else None)


def last_error_line(trial_path: str | os.PathLike | None) -> str | None:
    """The last non-empty line of a trial's ``std.err`` (its error message), if any."""
    if trial_path is None:
        return None
    try:
        lines = storage.read_text(storage.join(str(trial_path), "std.err")).splitlines()
    except OSError:
        return None
    lines = [line.strip() for line in lines if line.strip()]
    return lines[-1] if lines else None
