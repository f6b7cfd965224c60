"""Standard NAS results one can trust: MO-ASHA's ranks, seeds, trial checkpoints without pickle,
early refusal of bad flags, failed trials on record, resuming a killed search, no orphaned workers."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch
from syne_tune.optimizer.schedulers.asha import Bracket
from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import pareto_efficient
from syne_tune.report import retrieve

from nasprune import analysis
from nasprune.errors import NaspruneError
from nasprune.spaces import get_search_space
from nasprune.snas import (
    JOURNAL_FILE,
    TUNER_PID_ENV,
    ParetoRankPriority,
    TrialJournal,
    TrialLimit,
    default_max_failures,
    make_standard_nas_scheduler,
    pareto_ranks,
    replay,
    run_standard_nas,
    worker,
)
from nasprune.subnet import ModelShape


# --- MO-ASHA's ranks ------------------------------------------------------------------------
# Three fronts of several points each (error, size), rows deliberately interleaved.
FRONTS = {
    0: [[0.05, 0.95], [0.1, 0.5], [0.3, 0.3], [0.5, 0.1]],
    1: [[0.2, 0.9], [0.6, 0.6], [0.9, 0.25]],
    2: [[0.95, 0.95], [0.7, 0.97]],
}


def _interleaved_fronts():
    rows, front_of = [], []
    for position in range(4):
        for front, points in FRONTS.items():
            if position < len(points):
                rows.append(points[position])
                front_of.append(front)
    return np.array(rows), np.array(front_of)


def test_every_point_of_a_front_outranks_every_point_of_the_next():
    points, front_of = _interleaved_fronts()
    ranks = pareto_ranks(points)
    assert sorted(ranks) == list(range(len(points)))
    for i, j in itertools.product(range(len(points)), repeat=2):
        if front_of[i] < front_of[j]:
            assert ranks[i] < ranks[j]
    # Inside a front: the lowest error first, then the farthest point from it (the smallest size).
    first_front = np.flatnonzero(front_of == 0)
    order = first_front[np.argsort(ranks[first_front])]
    assert points[order].tolist() == [[0.05, 0.95], [0.5, 0.1], [0.1, 0.5], [0.3, 0.3]]


def test_ranks_follow_the_rows_when_the_rows_are_shuffled():
    rng = np.random.default_rng(0)
    points = rng.random((12, 2))
    ranks = pareto_ranks(points)
    for _ in range(5):
        permutation = rng.permutation(len(points))
        assert pareto_ranks(points[permutation]).tolist() == ranks[permutation].tolist()
    # A dominating point always ranks better than the point it dominates.
    for i, j in itertools.product(range(len(points)), repeat=2):
        if np.all(points[i] <= points[j]) and np.any(points[i] < points[j]):
            assert ranks[i] < ranks[j]
    assert set(np.flatnonzero(ranks < pareto_efficient(points).sum())) == set(np.flatnonzero(pareto_efficient(points)))


def _rung_decision(recorded_points, new_point):
    bracket = Bracket(1, 3, 3, 0, ParetoRankPriority())
    bracket.rungs[-1][1].update({i: {"e": e, "s": s} for i, (e, s) in enumerate(recorded_points)})
    return bracket.on_result(len(recorded_points), 1, {"e": new_point[0], "s": new_point[1]})


def test_a_new_point_that_is_best_on_the_first_front_continues():
    # One front of four; the new point has the lowest error, so the epsilon-net starts from it
    # (rank 0 of 4). Inverting Syne Tune's sort output gave it rank 2 of 4, behind the top third
    # of the rung, and MO-ASHA stopped the best new trade-off.
    assert _rung_decision([(0.3, 0.1), (0.2, 0.5), (0.1, 0.6)], (0.0, 0.7)) == "CONTINUE"
    points, _ = _interleaved_fronts()
    assert _rung_decision(points.tolist(), (0.01, 0.99)) == "CONTINUE"
    assert _rung_decision(points.tolist(), (0.99, 0.99)) == "STOP"  # behind the last front



# --- the worker: seeds and trial checkpoints without pickle ----------------------------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny BERT with a classifier head, one without (the head is initialised at random),
    and tiny sentiment data."""
    from transformers import BertModel

    from conftest import tiny_config, write_sentiment_csv, write_tiny_bert

    root = tmp_path_factory.mktemp("snas-trust")
    write_tiny_bert(root / "model", num_layers=2, initializer_range=0.02)
    write_tiny_bert(root / "headless", num_layers=2, initializer_range=0.02)
    config = tiny_config("bert", num_layers=2, vocab_size=len(SENTIMENT_VOCAB), initializer_range=0.02)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(root / "headless")  # replaces the classifier
    for split, n, seed in (("train", 48, 0), ("valid", 24, 1), ("test", 24, 2)):
        write_sentiment_csv(root / f"{split}.csv", n, seed)
    return root


SENTIMENT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *__import__("conftest").SENTIMENT_WORDS]


def _worker_args(root, *extra, model="model"):
    return [
        "--model", str(root / model), "--train_file", str(root / "train.csv"),
        "--validation_file", str(root / "valid.csv"), "--test_file", str(root / "test.csv"),
        "--max_seq_length", "16", "--learning_rate", "5e-3", "--batch_size", "8", "--warmup_ratio", "0",
        "--num_threads", "1", "--search_space", "small", "--num_layers", "2", "--num_heads", "2",
        "--num_units", "32", *map(str, extra),
    ]


@pytest.fixture
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _trained_weights(checkpoint) -> dict:
    from safetensors.torch import load_file

    pointer = json.loads((checkpoint / worker.TrialCheckpoint.POINTER).read_text())["folder"]
    return load_file(checkpoint / pointer / worker.TrialCheckpoint.WEIGHTS)


def test_the_random_head_follows_the_seed(workspace, tmp_path, capsys, keep_torch_threads):
    def run(name, seed):
        args = _worker_args(workspace, "--epochs", 1, "--seed", seed, "--st_checkpoint_dir", tmp_path / name,
                            model="headless")
        assert worker.main(args) == 0
        return _trained_weights(tmp_path / name), retrieve(capsys.readouterr().out.splitlines())

    first, first_reports = run("a", 3)
    torch.manual_seed(12345)  # whatever the process's random state, the seed decides
    second, second_reports = run("b", 3)
    other, _ = run("c", 4)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    head = [k for k in first if k.startswith("classifier")]
    assert head and not all(torch.equal(first[k], other[k]) for k in head)
    assert first_reports[0]["valid_error"] == second_reports[0]["valid_error"]


class Interrupt(Exception):
    pass


def test_a_trial_interrupted_after_an_epoch_resumes_exactly(workspace, tmp_path, keep_torch_threads):
    # The worker saves its checkpoint before it reports; a report that raises stands for the
    # scheduler pausing the trial (or its tuner dying) right after epoch 1.
    args, variables = worker.parse_config(
        _worker_args(workspace, "--epochs", 2, "--st_checkpoint_dir", tmp_path / "paused")
    )
    uninterrupted = worker.run_trial(*worker.parse_config(
        _worker_args(workspace, "--epochs", 2, "--st_checkpoint_dir", tmp_path / "straight")
    ), report=lambda **result: None)

    def pause_after_first_epoch(**result):
        raise Interrupt

    with pytest.raises(Interrupt):
        worker.run_trial(args, variables, report=pause_after_first_epoch)
    torch.manual_seed(999)  # a resumed trial is a new process with its own random state
    resumed = worker.run_trial(args, variables, report=lambda **result: None)
    assert [r["epoch"] for r in resumed] == [2]
    for name in ("valid_error", "test_error", "train_loss", "params"):
        assert resumed[0][name] == uninterrupted[1][name], name
    first, second = _trained_weights(tmp_path / "straight"), _trained_weights(tmp_path / "paused")
    assert all(torch.equal(first[k], second[k]) for k in first)


class _Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_pickle_in_a_trial_checkpoint_does_not_run(workspace, tmp_path, capsys, keep_torch_threads):
    marker = tmp_path / "payload-ran"
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save({"epoch": 1, "payload": _Payload(marker)}, legacy / worker.LEGACY_CHECKPOINT_FILE)
    assert worker.main(_worker_args(workspace, "--epochs", 1, "--st_checkpoint_dir", legacy)) == 2
    assert "unsafe old format" in capsys.readouterr().err
    assert not marker.exists()

    # A pickle in place of the weights of a real checkpoint is refused as well.
    checkpoint = tmp_path / "planted"
    assert worker.main(_worker_args(workspace, "--epochs", 1, "--st_checkpoint_dir", checkpoint)) == 0
    capsys.readouterr()
    (folder,) = [p for p in checkpoint.iterdir() if p.is_dir()]
    torch.save({"payload": _Payload(marker)}, folder / worker.TrialCheckpoint.WEIGHTS)
    assert worker.main(_worker_args(workspace, "--epochs", 2, "--st_checkpoint_dir", checkpoint)) == 2
    assert "corrupt trial checkpoint" in capsys.readouterr().err
    assert not marker.exists()


def test_workers_exit_when_their_tuner_dies(tmp_path):
    # A stand-in tuner starts a trial process the way LocalBackend does, then is killed.
    child = textwrap.dedent("""
        import time
        from nasprune.snas.worker import watch_tuner
        assert watch_tuner() is not None
        time.sleep(120)
    """)
    tuner = textwrap.dedent(f"""
        import os, subprocess, sys, time
        os.environ[{TUNER_PID_ENV!r}] = str(os.getpid())
        worker = subprocess.Popen([sys.executable, "-c", {child!r}])
        print(worker.pid, flush=True)
        time.sleep(120)
    """)
    process = subprocess.Popen([sys.executable, "-c", tuner], stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(process.stdout.readline())
        time.sleep(6)  # the trial imports torch and starts watching
        assert _alive(worker_pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert _wait_until_gone([worker_pid], seconds=15)
    finally:
        process.kill()
        process.wait()


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_until_gone(pids, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.2)
    return False


# --- bad flags are refused before any trial starts --------------------------------------------
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--learning-rate", "-1"], "--learning-rate must be positive"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--warmup-ratio", "1.5"], "--warmup-ratio"),
        (["--eval-batch-size", "0"], "--eval-batch-size must be at least 1"),
        (["--max-seq-length", "4"], "--max-seq-length must be at least 8"),
        (["--max-train-samples", "0"], "--max-train-samples must be at least 1"),
        (["--max-failures", "-1"], "--max-failures must be at least 0"),
        (["--num-threads", "0"], "--num-threads must be at least 1"),
        (["--max-seq-length", "100"], "--max-seq-length 100 is longer than the model's 64 positions"),
    ],
)
def test_bad_flags_stop_nas_before_any_trial(workspace, tmp_path, capsys, flags, message):
    from nasprune import cli

    output = tmp_path / "out"
    code = cli.main([
        "nas", "--model", str(workspace / "model"), "--train-file", str(workspace / "train.csv"),
        "--validation-file", str(workspace / "valid.csv"), "--test-file", str(workspace / "test.csv"),
        "--max-trials", "2", "--output-dir", str(output), *flags,
    ])
    error = capsys.readouterr().err
    assert code == 2 and message in error
    assert len([line for line in error.splitlines() if line.strip()]) == 1, error
    assert not (output / JOURNAL_FILE).exists() and not (output / "syne-tune").exists()


# --- the journal -------------------------------------------------------------------------------
SETTINGS = {"method": "moasha", "objectives": ["valid_error", "relative_params"], "epochs": 2, "seed": 0,
            "data_seed": 0, "search_space": "small", "model": "/m", "train_file": "/t.csv"}


def test_a_rerun_with_other_settings_is_refused_naming_each_difference(tmp_path):
    journal = TrialJournal.open(tmp_path, SETTINGS)
    journal.record_start(0, {"num_layers": 1}, None, str(tmp_path / "0"))
    changed = {**SETTINGS, "method": "nsga2", "epochs": 3, "data_seed": 1}
    del changed["train_file"]
    with pytest.raises(NaspruneError) as caught:
        TrialJournal.open(tmp_path, changed)
    message = str(caught.value)
    for difference in ('--method "moasha" (now "nsga2")', "--epochs 2 (now 3)", "--data-seed 0 (now 1)",
                       '--train-file "/t.csv" (now (not set))', "--overwrite-output-dir"):
        assert difference in message
    assert "--seed" not in message.replace("--data-seed", "")
    # The same settings continue it; --overwrite-output-dir starts afresh.
    assert list(TrialJournal.open(tmp_path, SETTINGS, resume=True).trials) == [0]
    assert TrialJournal.open(tmp_path, changed, overwrite=True).trials == {}
    with pytest.raises(NaspruneError, match="--resume"):
        TrialJournal.open(tmp_path / "empty", SETTINGS, resume=True)


def test_trial_folders_without_a_journal_are_kept_unless_overwritten(tmp_path):
    leftover = tmp_path / "syne-tune" / "nasprune-moasha" / "0" / "std.out"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("a trial of an older run")
    with pytest.raises(NaspruneError, match="--overwrite-output-dir"):
        TrialJournal.open(tmp_path, SETTINGS)
    assert leftover.read_text() == "a trial of an older run"
    TrialJournal.open(tmp_path, SETTINGS, overwrite=True)
    assert not (tmp_path / "syne-tune").exists()


def test_the_journal_survives_a_line_cut_off_by_a_kill(tmp_path):
    journal = TrialJournal.open(tmp_path, SETTINGS)
    journal.record_start(0, {"num_layers": 2}, None, "p0")
    journal.record_result(0, {"epoch": 1, "valid_error": 0.4, "config_num_layers": 2})
    journal.record_end(0, "completed")
    journal.record_start(1, {"num_layers": 1}, None, "p1")
    with open(tmp_path / JOURNAL_FILE, "a") as handle:
        handle.write('{"event": "result", "trial_id": 1, "resu')  # killed mid-line
    again = TrialJournal.open(tmp_path, SETTINGS)
    assert again.trials[0].status == "completed" and again.trials[0].results[0]["valid_error"] == 0.4
    assert "config_num_layers" not in again.trials[0].results[0]
    assert again.trials[1].status is None and again.trials[1].results == []
    assert again.elapsed_before > 0 and again.next_trial_id == 2
    # A corrupt line in the middle is not skipped silently.
    lines = (tmp_path / JOURNAL_FILE).read_text().splitlines()
    (tmp_path / JOURNAL_FILE).write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    with pytest.raises(NaspruneError, match="corrupt at line 2"):
        TrialJournal.open(tmp_path, SETTINGS)


def test_replayed_trials_teach_the_new_scheduler_and_are_not_suggested_again(tmp_path):
    space = get_search_space("small", ModelShape(2, 4, 8, 32, 64))
    metrics = ["valid_error", "relative_params"]
    journal = TrialJournal.open(tmp_path, SETTINGS)
    design = space.initial_design()
    for trial_id, (config, status) in enumerate(zip(design, ["completed", "failed", "stopped_early"])):
        journal.record_start(trial_id, config, None, f"p{trial_id}")
        for epoch in range({"completed": 2, "failed": 0, "stopped_early": 1}[status]):
            journal.record_result(trial_id, {"epoch": epoch + 1, "valid_error": 0.3, "relative_params": 0.5})
        journal.record_end(trial_id, status)
    journal.record_start(3, {"num_layers": 1, "num_heads": 1, "num_units": 8}, None, "p3")  # running at the kill

    scheduler = make_standard_nas_scheduler("moasha", space.config_space, metrics, 2, [], 0, space)
    unfinished = replay(journal, scheduler)
    assert unfinished == [({"num_layers": 1, "num_heads": 1, "num_units": 8}, 3)]
    assert 0 not in scheduler.trial_info  # the completed trial went through its rungs to the end
    earlier = {space.to_subnet(config) for config in design}
    assert not earlier & {space.to_subnet(scheduler.suggest().config) for _ in range(10)}

    nsga2 = make_standard_nas_scheduler("nsga2", space.config_space, metrics, 2, [], 0, space)
    replay(journal, nsga2)
    assert nsga2.searcher.num_completed == 1 and nsga2.searcher.num_pending == 0
    # The unfinished trial is started first, from its checkpoint, and counts against the limit.
    limited = TrialLimit(nsga2, max_trials=2, restart=unfinished)
    first = limited.suggest()
    assert first.config == unfinished[0][0] and first.checkpoint_trial_id == 3
    assert limited.suggest() is not None and limited.suggest() is None


# --- failed trials stay on record ----------------------------------------------------------------
#: A test-only entry point: records the arguments it was given, crashes for the largest network
#: (before any report, as an out-of-memory kill would) and runs the real worker otherwise.
CRASHING_ENTRY_POINT = """
    import json, os, sys, pathlib
    arguments = sys.argv[1:]
    folder = pathlib.Path({folder!r})
    (folder / f"arguments-{{os.getpid()}}.json").write_text(json.dumps(arguments))
    config = dict(zip(arguments[::2], arguments[1::2]))
    if (config["--num_layers"], config["--num_heads"], config["--num_units"]) == ("2", "4", "64"):
        sys.exit("CUDA out of memory (injected)")
    from nasprune.snas.worker import main
    sys.exit(main())
"""


def _data_options(root):
    from nasprune.data import DataOptions

    return DataOptions(train_file=str(root / "train.csv"), validation_file=str(root / "valid.csv"),
                       test_file=str(root / "test.csv"), max_seq_length=16, seed=7)


def test_crashed_trials_are_recorded_and_the_search_goes_on(workspace, tmp_path):
    entry_point = tmp_path / "crashing_worker.py"
    entry_point.write_text(textwrap.dedent(CRASHING_ENTRY_POINT.format(folder=str(tmp_path))))
    result = run_standard_nas(
        str(workspace / "model"), _data_options(workspace), tmp_path / "out", method="random_search",
        n_workers=2, max_trials=5, epochs=1, seed=3, sleep_time=0.2, learning_rate=5e-3, batch_size=8,
        worker_script=entry_point,
    )
    # Every trial was given the split seed and the training seed apart.
    for arguments in tmp_path.glob("arguments-*.json"):
        config = dict(zip(*[iter(json.loads(arguments.read_text()))] * 2))
        assert config["--data_seed"] == "7" and config["--seed"] == "3"
    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(trials) == 5 and sorted(trials["trial_id"]) == list(range(5))
    (crashed,) = trials[trials["status"] == "failed"].itertuples()
    assert (crashed.config_num_layers, crashed.config_num_heads, crashed.config_num_units) == (2, 4, 64)
    assert crashed.error == "CUDA out of memory (injected)" and crashed.epochs == 0
    assert (trials.loc[trials["status"] != "failed", "status"] == "completed").all()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["trial_counts"] == {"started": 5, "completed": 4, "stopped_early": 0, "interrupted": 0, "failed": 1}
    assert summary["failed_trials"] == [{"trial_id": int(crashed.trial_id), "error": "CUDA out of memory (injected)",
                                         "log": crashed.log}]
    assert summary["max_failures"] == 3 and summary["data_seed"] == 7
    # The full model's trial crashed: the summary says so rather than leaving it null.
    full = summary["full_model"]
    assert full["status"] == "failed" and "CUDA out of memory" in full["reason"]
    assert len(result.table) == 4  # results.csv: the evaluated sub-networks
    assert summary["hypervolume_definition"] == analysis.HYPERVOLUME_DEFINITION
    assert summary["reference_point"] == [analysis.REFERENCE_POINT] * 2


def test_more_failures_than_allowed_stop_the_search_with_their_errors_on_record(workspace, tmp_path):
    entry_point = tmp_path / "failing.py"
    entry_point.write_text("import sys; sys.exit('boom: no GPU left')")
    with pytest.raises(NaspruneError, match="3 trials failed .more than --max-failures 2.*boom: no GPU left"):
        run_standard_nas(
            str(workspace / "model"), _data_options(workspace), tmp_path / "out", method="random_search",
            n_workers=1, max_trials=5, epochs=1, sleep_time=0.1, max_failures=2, worker_script=entry_point,
        )
    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    failed = trials[trials["status"] == "failed"]
    assert len(failed) == 3 and set(failed["error"]) == {"boom: no GPU left"}
    # A trial the tuner had started before it gave up was stopped with it.
    assert set(trials["status"]) <= {"failed", "interrupted"}


# --- a killed search continues ------------------------------------------------------------------
def _journal_events(output):
    path = output / JOURNAL_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return events


def test_a_killed_search_continues_where_it_stopped_and_leaves_no_workers(workspace, tmp_path):
    import psutil

    output = tmp_path / "out"
    command = [
        sys.executable, "-m", "nasprune.cli", "nas", "--model", str(workspace / "model"),
        "--train-file", str(workspace / "train.csv"), "--validation-file", str(workspace / "valid.csv"),
        "--test-file", str(workspace / "test.csv"), "--max-seq-length", "16", "--method", "random_search",
        "--max-trials", "4", "--n-workers", "2", "--epochs", "2", "--learning-rate", "5e-3",
        "--batch-size", "8", "--num-threads", "1", "--output-dir", str(output),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    tuner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    try:
        # Kill the tuner once a trial finished and another one runs.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and tuner.poll() is None:
            events = _journal_events(output)
            ended = {e["trial_id"] for e in events if e["event"] == "end"}
            running = {e["trial_id"] for e in events if e["event"] == "start"} - ended
            workers = psutil.Process(tuner.pid).children()
            if ended and running and workers:
                break
            time.sleep(0.1)
        assert tuner.poll() is None, "the search ended before it could be killed"
        worker_pids = [p.pid for p in workers]
        os.kill(tuner.pid, signal.SIGKILL)
        tuner.wait()
    finally:
        tuner.kill()
        tuner.wait()
    assert _wait_until_gone(worker_pids, seconds=15), "workers outlived their tuner"
    before = _journal_events(output)
    finished_before = {e["trial_id"] for e in before if e["event"] == "end"}

    rerun = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    events = _journal_events(output)
    starts = [e for e in events if e["event"] == "start"]
    ends = {e["trial_id"]: e["status"] for e in events if e["event"] == "end"}
    # No finished trial ran again; each unfinished one continued as one new trial.
    rerun_starts = starts[len([e for e in before if e["event"] == "start"]):]
    continued = [e["continues"] for e in rerun_starts if e["continues"] is not None]
    assert continued and not set(continued) & finished_before
    assert not finished_before & {e["trial_id"] for e in rerun_starts}
    # ... from its checkpoint: every epoch of it was trained once. A trial killed after its last
    # checkpoint has nothing left to train and reports that epoch's result again, unchanged (a
    # retrained epoch would have taken time of its own).
    for start in rerun_starts:
        if start["continues"] is not None:
            results = [e["result"] for e in events if e["event"] == "result"
                       and e["trial_id"] in (start["continues"], start["trial_id"])]
            trained = {(r["epoch"], r["elapsed_seconds"], r["valid_error"]) for r in results}
            assert sorted(epoch for epoch, _, _ in trained) == [1, 2]
    # Four sub-networks, each trained to completion exactly once.
    completed = [json.dumps(e["config"], sort_keys=True) for e in starts if ends.get(e["trial_id"]) == "completed"]
    subnets = {json.dumps({k: e["config"][k] for k in ("num_layers", "num_heads", "num_units")}) for e in starts}
    assert len(completed) == len(set(completed)) == 4 and len(subnets) == 4
    summary = json.loads((output / "summary.json").read_text())
    assert summary["trial_counts"]["started"] == 4 and summary["trial_counts"]["completed"] == 4
    assert summary["runs"] == 2
    table = pd.read_csv(output / "results.csv")
    assert len(table) == 4 and (table["epochs"] == 2).all()


def test_a_finished_experiment_rerun_trains_nothing_again_and_a_larger_budget_extends_it(workspace, tmp_path):
    def search(**budget):
        return run_standard_nas(
            str(workspace / "model"), _data_options(workspace), tmp_path, method="random_search", n_workers=2,
            epochs=1, sleep_time=0.2, learning_rate=5e-3, batch_size=8, **budget,
        )

    first = search(max_trials=2)
    assert first.summary["trial_counts"]["completed"] == 2 and first.summary["runs"] == 1
    again = search(max_trials=2)  # the same command: the experiment is complete
    assert again.tuner is None and again.summary["runs"] == 1
    assert again.table["valid_error"].tolist() == first.table["valid_error"].tolist()
    spent = search(max_wallclock_time=0.5)  # less time than the experiment already spent
    assert spent.tuner is None and spent.summary["trial_counts"]["started"] == 2
    extended = search(max_trials=3)
    assert extended.summary["runs"] == 2 and sorted(extended.table["trial_id"]) == [0, 1, 2]
    starts = [e for e in _journal_events(tmp_path) if e["event"] == "start"]
    assert [e["trial_id"] for e in starts] == [0, 1, 2]  # trials 0 and 1 never ran again
    assert default_max_failures(None) == 3 and default_max_failures(5) == 3 and default_max_failures(101) == 11
