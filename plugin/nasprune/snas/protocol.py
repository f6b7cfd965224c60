"""What the standard-NAS launcher and its trials agree on: the tuner's pid in the environment,
the files of a trial checkpoint and the values a trial reports after every epoch.

Both :mod:`nasprune.snas.launch` and the trial worker (:mod:`nasprune.snas.worker`) import this
module; the worker imports nothing of the launcher.
"""

from __future__ import annotations

#: The environment variable that tells each trial the tuner's pid: a trial exits once its tuner
#: is gone (see :func:`nasprune.snas.worker.watch_tuner`).
TUNER_PID_ENV = "NASPRUNE_TUNER_PID"
#: A trial checkpoint (:class:`nasprune.snas.worker.TrialCheckpoint`): ``latest.json`` names the
#: folder of the last saved epoch, whose ``trial.json`` holds the trial's reports so far.
CHECKPOINT_POINTER = "latest.json"
CHECKPOINT_PROGRESS = "trial.json"
#: What the worker reports per epoch, besides the objectives.
REPORTED = ["valid_error", "test_error", "params", "relative_params", "macs", "relative_macs"]
#: Reported too when latency is an objective.
LATENCY_REPORTED = ["latency_seconds", "relative_latency"]
