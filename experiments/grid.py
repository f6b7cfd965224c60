"""Run an experiment grid: tasks x data seeds x search methods x search spaces x training strategies
x seeds, plus the pruning baselines, by calling :mod:`nasprune.workflows` and :mod:`nasprune.baselines`
directly (no subprocesses).

    python experiments/grid.py experiments/grid_example.yaml            # run (resumes)
    python experiments/grid.py experiments/grid_example.yaml --dry-run  # list the jobs

The config is YAML (needs pyyaml), JSON, or a Python file that defines a ``CONFIG`` dict; see
``grid_example.yaml`` for every key. The layout under ``output_dir``::

    <task>/seed-<s>/finetune/                             fine-tuned checkpoint (baselines, rewiring)
    <task>/seed-<s>/supernet-<space>-<strategy>[-rewired]/ super-network checkpoint
    <task>/seed-<s>/ws-<space>-<strategy>[-rewired]/<method>/  search results
    <task>/seed-<s>/baselines/<method>/                   baseline results
    <task>/shared-seed-<s0>/{finetune,supernet-...}/      checkpoints, with share_checkpoints: true

With ``data_seeds`` other than ``[0]``, every path gets one more level after the task:
``<task>/data-seed-<d>/seed-<s>/...``.

A job whose folder holds ``summary.json`` is finished and skipped; training resumes from its last
finished epoch and a search from its evaluation journal, so an interrupted grid is resumed by
running the same command again. ``nasprune compare OUTPUT_DIR --output-dir ...`` then compares
everything. The grid seed (``seeds``) drives training, search and baseline randomness only; the
data seed (``data_seeds``, default ``[0]``) draws the train/validation/test split and the sample caps,
so every seed of one data seed sees the same splits (``nasprune compare`` ranks them as one
instance). List several data seeds to measure the variance over splits as well.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import runpy
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

logger = logging.getLogger("nasprune.grid")

DEFAULTS: dict[str, Any] = {
    "output_dir": "grid-output",
    "model": None,
    "tasks": ["rotten_tomatoes"],
    "seeds": [0],
    # Seeds of the data split and sample caps: every training/search seed shares each split.
    "data_seeds": [0],
    "search_spaces": ["small"],
    "strategies": ["full"],
    "methods": ["random_search"],
    "baselines": [],
    "rewire": [False],
    "data": {},
    "training": {},
    "finetune": {},
    "search": {},
    "eval": {},
    "baseline_options": {},
    "rewiring": {"num_examples": 512, "importance": "fisher"},
    "keep_going": True,
    # Train the fine-tuned and super-network checkpoints once per task (with the first seed) and
    # run every seed's searches and baselines on them: cheaper, but seeds then vary only the search
    # and the baselines' own randomness, not the training.
    "share_checkpoints": False,
}
FINISHED = "summary.json"


# --- config ---------------------------------------------------------------------------------
def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML, JSON or Python (``CONFIG = {...}``) grid config and fill in the defaults."""
    path = Path(path)
    if path.suffix == ".py":
        raw = runpy.run_path(str(path)).get("CONFIG")
        if not isinstance(raw, dict):
            raise SystemExit(f"{path} must define a dict named CONFIG")
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise SystemExit(f"reading {path} needs pyyaml (pip install pyyaml); or write the config as JSON") from None
        raw = yaml.safe_load(path.read_text()) or {}
    else:
        raw = json.loads(path.read_text())
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise SystemExit(f"unknown config keys: {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    config = {**DEFAULTS, **raw}
    if "seed" in (config["data"] or {}):
        # The split seed has its own key (an axis); "data.seed" is what older configs wrote.
        if "data_seeds" in raw:
            raise SystemExit("give the data split seed once: data_seeds, not data.seed as well")
        config["data"] = {k: v for k, v in config["data"].items() if k != "seed"}
        config["data_seeds"] = raw["data"]["seed"]
    for key in ("tasks", "seeds", "data_seeds", "search_spaces", "strategies", "methods", "baselines", "rewire"):
        if not isinstance(config[key], list):
            config[key] = [config[key]]
    return config


# --- jobs -----------------------------------------------------------------------------------
@dataclass
class Job:
    """One unit of work; ``done()`` says whether it can be skipped."""

    name: str
    folder: Path
    run: Callable[[], Any]
    kind: str  # "train" or "results"

    def done(self) -> bool:
        if self.kind == "results":
            return (self.folder / FINISHED).is_file()
        return _finished_checkpoint(self.folder) is not None


def _finished_checkpoint(folder: Path) -> Path | None:
    """The last epoch checkpoint, once it holds all the epochs asked for (recorded in ``.epochs``)."""
    from nasprune.checkpoint import CheckpointInfo, epoch_checkpoints

    epochs = epoch_checkpoints(folder)
    target = folder / ".epochs"
    if not epochs or not target.is_file():
        return None
    return epochs[-1] if CheckpointInfo.load(epochs[-1]).epoch >= int(target.read_text()) else None


def _data_options(config: dict, task: str, data_seed: int):
    from nasprune.data import DataOptions

    # "custom": the user's files named in the data section (train_file, ...), no built-in task.
    return DataOptions(task=None if task == "custom" else task, seed=data_seed, **config["data"]).with_absolute_files()


def _data_overrides(config: dict) -> dict[str, Any]:
    """What searches and baselines pass on top of a checkpoint's data options: the evaluation caps,
    and the data files of the config (the config names them, so they need not lie beside the
    checkpoint; see nasprune.data.checkpoint_data_options)."""
    from nasprune.data import DATA_FILE_FLAGS

    given = {name: os.path.abspath(config["data"][name]) for name in DATA_FILE_FLAGS if config["data"].get(name)}
    return {**given, **config["eval"]}


def _training_config(config: dict, section: str, seed: int, strategy: str):
    from nasprune.training import TrainingConfig

    return TrainingConfig(seed=seed, strategy=strategy, **config[section])


def _train_job(config: dict, task: str, data_seed: int, seed: int, space: str, strategy: str, folder: Path,
               name: str, section: str = "training", rewire_from: Path | None = None) -> Job:
    def run() -> Path:
        from nasprune.rewiring import RewiringOptions
        from nasprune.workflows import train_supernet

        training = _training_config(config, section, seed, strategy)
        # Rewiring measures the importance on the plainly fine-tuned checkpoint of the same seed.
        rewiring = RewiringOptions(**config["rewiring"], source=str(rewire_from)) if rewire_from else None
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".epochs").write_text(str(training.epochs))
        return train_supernet(config["model"], _data_options(config, task, data_seed), training, space, folder,
                              progress=False, rewiring=rewiring)

    return Job(name, folder, run, "train")


def _search_job(config: dict, seed: int, method: str, supernet: Path, folder: Path, name: str) -> Job:
    def run():
        from nasprune.checkpoint import resolve_checkpoint
        from nasprune.workflows import SearchOptions, search

        settings = dict(config["search"])
        if "objectives" in settings:
            settings["objectives"] = tuple(settings["objectives"])
        options = SearchOptions(method=method, seed=seed, **settings)
        return search(resolve_checkpoint(supernet), options, folder, _data_overrides(config) or None, progress=False)

    return Job(name, folder, run, "results")


def _baseline_job(config: dict, seed: int, method: str, finetuned: Path, folder: Path, name: str) -> Job:
    def run():
        from nasprune.baselines import BaselineOptions, run_baseline
        from nasprune.checkpoint import resolve_checkpoint

        settings = dict(config["baseline_options"])
        for key in ("budgets", "objectives"):
            if key in settings:
                settings[key] = tuple(settings[key])
        options = BaselineOptions(method=method, seed=seed, **settings)
        return run_baseline(resolve_checkpoint(finetuned), options, folder, _data_overrides(config) or None,
                            progress=False)

    return Job(name, folder, run, "results")


def build_jobs(config: dict) -> list[Job]:
    """All jobs of the grid, in an order where every job's inputs come before it."""
    root = Path(config["output_dir"])
    jobs: list[Job] = []
    # The default single split keeps the layout of grids written before data seeds existed.
    split_levels = config["data_seeds"] != [0]
    for task, data_seed, seed in ((t, d, s) for t in config["tasks"] for d in config["data_seeds"] for s in config["seeds"]):
        prefix = f"{task}/data-seed-{data_seed}" if split_levels else task
        base = root / prefix / f"seed-{seed}"
        # Where the checkpoints live and which seed trains them.
        train_seed = config["seeds"][0] if config["share_checkpoints"] else seed
        train_base = root / prefix / f"shared-seed-{train_seed}" if config["share_checkpoints"] else base

        def train_job(space: str, strategy: str, folder: Path, **kwargs: Any) -> Job:
            name = folder.relative_to(root).as_posix()
            return _train_job(config, task, data_seed, train_seed, space, strategy, folder, name, **kwargs)

        finetuned = train_base / "finetune"
        if config["baselines"] or any(config["rewire"]):
            jobs.append(train_job("small", "standard", finetuned, section="finetune"))
        for method in config["baselines"]:
            folder = base / "baselines" / method
            jobs.append(_baseline_job(config, seed, method, finetuned, folder, f"{prefix}/seed-{seed}/baseline/{method}"))
        # No search methods: no super-network to train (a baselines-only grid).
        for space in config["search_spaces"] if config["methods"] else []:
            for strategy in config["strategies"]:
                for rewired in config["rewire"]:
                    suffix = f"{space}-{strategy}" + ("-rewired" if rewired else "")
                    supernet = train_base / f"supernet-{suffix}"
                    jobs.append(train_job(space, strategy, supernet, rewire_from=finetuned if rewired else None))
                    for method in config["methods"]:
                        folder = base / f"ws-{suffix}" / method
                        jobs.append(_search_job(config, seed, method, supernet, folder,
                                                f"{prefix}/seed-{seed}/ws-{suffix}/{method}"))
    # A shared checkpoint is one job, listed where it is first needed.
    unique: dict[str, Job] = {}
    for job in jobs:
        unique.setdefault(job.name, job)
    return list(unique.values())


def run_grid(config: dict, dry_run: bool = False) -> dict[str, str]:
    """Run every unfinished job; returns ``name -> status`` (also written to ``grid_status.json``)."""
    from nasprune.files import write_json_atomic

    status: dict[str, str] = {}
    root = Path(config["output_dir"])
    for job in build_jobs(config):
        if job.done():
            status[job.name] = "skipped (finished)"
        elif dry_run:
            status[job.name] = "to run"
        else:
            started = time.perf_counter()
            logger.info("running %s", job.name)
            try:
                job.run()
                status[job.name] = f"done in {time.perf_counter() - started:.0f}s"
            except Exception as err:  # one failed job should not lose the rest of the grid
                if not config["keep_going"]:
                    raise
                status[job.name] = f"failed: {type(err).__name__}: {err}"
                logger.error("%s failed:\n%s", job.name, traceback.format_exc())
        logger.info("%s: %s", job.name, status[job.name])
        if not dry_run:  # rewritten after every job: atomically, so a crash cannot truncate it
            write_json_atomic(status, root / "grid_status.json")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="YAML, JSON or Python config")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs and whether they are finished")
    parser.add_argument("--output-dir", help="override the config's output_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = load_config(args.config)
    if args.output_dir:
        config["output_dir"] = args.output_dir
    status = run_grid(config, dry_run=args.dry_run)
    for name, state in status.items():
        print(f"{state:>24}  {name}")
    return 1 if any(s.startswith("failed") for s in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
