"""Weight-sharing search with several workers (``--workers K``, issue 11): the loop keeps K
evaluations in flight, Ray actors measure the sub-networks, and the results, journal and resume are
those of the one-process search."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from conftest import write_sentiment_csv, write_tiny_bert
from nasprune import cli
from nasprune.data import DataOptions
from nasprune.evaluation import SubnetEvaluator
from nasprune.results import JOURNAL_FILE
from nasprune.search.loop import run_ask_tell
from nasprune.search.parallel import run_ask_tell_parallel
from nasprune.search.registry import make_scheduler
from nasprune.spaces import get_search_space
from nasprune.subnet import ModelShape
from nasprune.training import TrainingConfig
from nasprune.workflows import SearchOptions, search, train_supernet

SHAPE = ModelShape(num_layers=3, num_heads=4, head_dim=8, hidden_size=32, intermediate_size=16)
METRICS = ["error", "size"]


# --- the loop, with a pool that finishes in any order (no Ray) ---------------------------------
class LastInFirstOut:
    """Evaluates on submit, hands results back newest first: the most out-of-order a pool can be."""

    def __init__(self, capacity: int, space):
        self.capacity = capacity
        self.space = space
        self.pending: list = []
        self.submitted = 0

    def submit(self, key, config):
        self.submitted += 1
        self.pending.append((key, objectives(self.space, config)))

    def next_result(self):
        return self.pending.pop()


def objectives(space, config):
    subnet = space.to_subnet(config)
    size = float(subnet.head_mask.sum() + subnet.unit_mask.sum()) / (subnet.head_mask.size + subnet.unit_mask.size)
    return {"error": (1 - size) ** 2 + 0.01 * float(subnet.head_mask[0].sum()), "size": size}


def _scheduler(method, space, seed=0):
    return make_scheduler(method, space.config_space, METRICS, space.initial_design(), seed)


def test_one_slot_gives_the_records_of_the_one_process_loop():
    space = get_search_space("small", SHAPE)
    one = run_ask_tell(_scheduler("nsga2", space), lambda c: objectives(space, c), 25, progress=False)
    slot = run_ask_tell_parallel(_scheduler("nsga2", space), LastInFirstOut(1, space), 25, progress=False)
    strip = lambda records: [(r["trial_id"], r["config"], r["metrics"], r["cached"]) for r in records]
    assert strip(slot) == strip(one)


@pytest.mark.parametrize("method", ["random_search", "morea", "local_search", "nsga2"])
def test_results_told_out_of_order_keep_every_method_going(method):
    space = get_search_space("small", SHAPE)
    pool = LastInFirstOut(4, space)
    records = run_ask_tell_parallel(_scheduler(method, space), pool, 30, progress=False)
    assert len(records) == 30
    assert sorted(r["trial_id"] for r in records) == list(range(30))
    evaluated = [r for r in records if not r["cached"]]
    assert pool.submitted == len(evaluated)  # each config once, however often it was suggested
    assert len({json.dumps(r["config"], sort_keys=True) for r in evaluated}) == len(evaluated)
    for record in records:
        assert record["metrics"] == objectives(space, record["config"])
    if method == "random_search":  # its suggestions do not depend on results
        one = run_ask_tell(_scheduler(method, space), lambda c: objectives(space, c), 30, progress=False)
        assert sorted(json.dumps(r["config"], sort_keys=True) for r in records) == sorted(
            json.dumps(r["config"], sort_keys=True) for r in one)


# --- searches on Ray workers --------------------------------------------------------------------
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs nasprune[ray]")


def _data(root: Path) -> DataOptions:
    """Tiny sentiment files, inside the training output folder (where a search may follow them)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 48, 0), ("valid", 40, 1), ("test", 24, 2)):
        write_sentiment_csv(root / f"{split}.csv", n, seed)
    return DataOptions(
        train_file=str(root / "train.csv"), validation_file=str(root / "valid.csv"),
        test_file=str(root / "test.csv"), text_column="text", label_column="label", max_seq_length=16,
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("parallel")
    write_tiny_bert(root / "model", num_layers=2)
    config = TrainingConfig(epochs=1, batch_size=16, learning_rate=1e-3, seed=0, strategy="sandwich")
    return train_supernet(str(root / "model"), _data(root / "supernet" / "data"), config, "small", root / "supernet",
                          progress=False)


@pytest.fixture(scope="module")
def local_ray():
    """One Ray instance for the module: the searches use it as they find it and leave it running."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def _search(checkpoint: Path, out: Path, workers: int, num_samples: int = 10):
    options = SearchOptions(method="random_search", num_samples=num_samples, seed=3, search_space="small",
                            workers=workers, threads_per_worker=1)
    return search(checkpoint, options, out, progress=False)


def _by_subnet(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("subnet").sort_index()


class _DriverPasses:
    """Counts the passes over a split run in this process (the driver), not in the workers;
    ``journalled``: only those of the validation evaluator (the one with the journal)."""

    def __init__(self, monkeypatch, journalled: bool = False):
        self.calls = 0
        original = SubnetEvaluator.predict

        def predict(evaluator, subnet):
            self.calls += not journalled or evaluator._journal is not None
            return original(evaluator, subnet)

        monkeypatch.setattr(SubnetEvaluator, "predict", predict)


class _MeasureJobs:
    """Counts the validation jobs the driver hands to the workers (the test split's are not counted)."""

    def __init__(self, monkeypatch):
        from ray.util import ActorPool

        self.jobs = 0
        original = ActorPool.submit

        def submit(pool, fn, value):
            self.jobs += isinstance(value, tuple)  # (key, subnet, with_error); a test job is a SubNetwork
            return original(pool, fn, value)

        monkeypatch.setattr(ActorPool, "submit", submit)


@pytest.fixture(scope="module")
def on_two_workers(checkpoint, local_ray, tmp_path_factory):
    """A search on two workers: its folder, its result and the passes over a split the driver ran."""
    out = tmp_path_factory.mktemp("two-workers") / "search"
    with pytest.MonkeyPatch.context() as monkeypatch:
        driver = _DriverPasses(monkeypatch)
        result = _search(checkpoint, out, workers=2, num_samples=8)
    return out, result, driver.calls


@needs_ray
def test_two_workers_evaluate_the_same_subnetworks_with_the_same_errors(checkpoint, on_two_workers, tmp_path):
    _, two, driver_passes = on_two_workers
    assert driver_passes == 0  # every sub-network was measured by a worker
    one = _search(checkpoint, tmp_path / "one", workers=1, num_samples=8)

    a, b = _by_subnet(one.table), _by_subnet(two.table)
    assert len(two.table) == len(one.table) == 8
    assert list(b.index) == list(a.index)
    assert sorted(two.table["trial_id"]) == sorted(one.table["trial_id"])
    for column in ("valid_error", "relative_params", "relative_macs", "pareto"):
        assert b[column].tolist() == a[column].tolist(), column
    front = a["pareto"]
    assert b.loc[front, "test_error"].tolist() == a.loc[front, "test_error"].tolist()
    assert two.summary["full_model"] == one.summary["full_model"]
    assert two.summary["complete"] and sorted(two.files) == sorted(one.files)
    assert two.summary["workers"] == 2 and two.summary["worker_devices"] == ["cpu"]


@needs_ray
def test_a_search_on_workers_resumes_from_its_journal(checkpoint, on_two_workers, monkeypatch):
    out, first, _ = on_two_workers
    jobs = _MeasureJobs(monkeypatch)
    # Through the command line this time: the flags reach the workers.
    status = cli.main(["--quiet", "search", "--checkpoint", str(checkpoint), "--output-dir", str(out),
                       "--method", "random_search", "--num-samples", "12", "--seed", "3", "--search-space", "small",
                       "--workers", "2", "--threads-per-worker", "1"])
    assert status == 0
    second = SimpleNamespace(table=pd.read_csv(out / "results.csv"))
    # random_search with the same seed suggests the same first eight: only new sub-networks are sent out.
    in_order = second.table.sort_values("trial_id")["subnet"].tolist()
    assert in_order[:8] == first.table.sort_values("trial_id")["subnet"].tolist()
    known = set(first.table["subnet"])
    assert jobs.jobs == len(set(second.table["subnet"]) - known)
    assert jobs.jobs > 0
    lines = (out / JOURNAL_FILE).read_text().splitlines()
    journalled = [json.loads(line)["subnet"] for line in lines[1:]]
    assert len(journalled) == len({json.dumps(s, sort_keys=True) for s in journalled})  # none twice

    # The journal the workers filled serves the one-process search too: nothing is evaluated again.
    validation = _DriverPasses(monkeypatch, journalled=True)
    again = _search(checkpoint, out, workers=1, num_samples=12)
    assert validation.calls == 0
    assert _by_subnet(again.table)["valid_error"].tolist() == _by_subnet(second.table)["valid_error"].tolist()


def test_one_worker_does_not_import_ray(checkpoint, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from nasprune import cli
        status = cli.main(["--quiet", "search", "--checkpoint", {str(checkpoint)!r}, "--output-dir",
                           {str(tmp_path / "out")!r}, "--num-samples", "3", "--workers", "1"])
        assert status == 0, status
        assert "ray" not in sys.modules, "--workers 1 imported ray"
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]


def test_two_workers_without_ray_fail_in_one_line(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" now raises ImportError
    status = cli.main(["--quiet", "search", "--checkpoint", str(checkpoint), "--output-dir",
                       str(tmp_path / "out"), "--workers", "2"])
    assert status == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'nasprune[ray]'" in lines[0]
    assert not (tmp_path / "out" / "results.csv").exists()


@needs_ray
def test_more_workers_than_the_cluster_has_cpus_are_refused_before_any_starts(local_ray):
    import ray

    from nasprune.errors import NaspruneError
    from nasprune.parallel_evaluation import RayWorkers, WorkerSettings

    settings = WorkerSettings(checkpoint="unused", data_overrides={}, eval_batch_size=8, macs_seq_length=16,
                              max_seq_lengths=(16,))
    with pytest.raises(NaspruneError, match=r"--workers 3 with 1 thread\(s\) each needs 3 CPUs.* has 2"):
        RayWorkers(settings, 3, threads_per_worker=1)
    assert ray.is_initialized()  # a Ray the caller started is left running
