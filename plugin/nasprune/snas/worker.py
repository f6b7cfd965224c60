"""The training-script worker of standard NAS: one Syne Tune trial fine-tunes one sub-network.

Standard NAS (Klein et al. 2024, "Structural Pruning of Pre-trained Language Models via NAS",
§4) cuts each candidate out of the *pre-trained* model and fine-tunes it on its own. This
script is what Syne Tune's ``LocalBackend`` launches for a trial::

    python -m nasprune.snas.worker --model PATH --task rotten_tomatoes --search_space small \\
        --num_layers 4 --num_heads 8 --num_units 1024 --epochs 3 --st_checkpoint_dir DIR

Fixed hyper-parameters are named options; every other ``--name value`` pair is a variable of
the search space. With ``--st_config_json_filename`` (``LocalBackend(pass_args_as_json=True)``)
the config is read from that JSON file instead, and options given on the command line win.

The model is wrapped in a :class:`~nasprune.supernet.SuperNetwork` with the sub-network
selected (slice mode): only the kept weights take part in the forward pass, so only they are
trained. After *every* epoch the worker evaluates the sub-network on the validation and test
splits, writes a checkpoint to ``--st_checkpoint_dir`` and then reports (epoch numbers start
at 1, as MO-ASHA's rungs expect)::

    epoch, valid_error, test_error, params, relative_params, macs, relative_macs,
    train_loss, elapsed_seconds

Checkpointing comes before reporting, so a trial that the scheduler pauses right after a
report, or whose tuner dies, resumes from exactly that epoch (model weights, optimizer,
learning-rate schedule and CPU and CUDA random state; safetensors and JSON, never a pickle; see
:class:`TrialCheckpoint`). ``elapsed_seconds`` is the trial's own working time, summed over
resumptions. ``--seed`` seeds the training (from the random classifier head on), ``--data_seed``
the data split. A trial started by ``nasprune nas`` exits once its tuner is gone
(:func:`watch_tuner`).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # LocalBackend runs this file as a script, which puts nasprune/snas/ itself first on sys.path;
    # its modules must not shadow top-level packages of the same name.
    del sys.path[0]

import argparse
import json
import logging
import os
import shutil
import threading
import time
from typing import Any, Callable, Sequence

import torch
from syne_tune import Reporter
from syne_tune.constants import ST_CHECKPOINT_DIR, ST_CONFIG_JSON_FNAME_ARG
from syne_tune.utils.checkpoint import checkpoint_model_at_rung_level, resume_from_checkpointed_model

from nasprune import data
from nasprune.checkpoint import load_training_state, save_training_state
from nasprune.data import DataOptions
from nasprune.errors import NaspruneError
from nasprune.evaluation import SubnetEvaluator
from nasprune.files import write_json_atomic
from nasprune.objectives import LatencyObjective
from nasprune.session import default_device, default_model, load_tokenizer
from nasprune.snas.protocol import CHECKPOINT_POINTER, CHECKPOINT_PROGRESS, TUNER_PID_ENV
from nasprune.spaces import get_search_space
from nasprune.supernet import SuperNetwork, load_hf_model
from nasprune.training import FixedSubnetStrategy, Trainer, TrainingConfig

logger = logging.getLogger("nasprune.snas.worker")

#: The pickled trial checkpoint of earlier versions: refused, never loaded.
LEGACY_CHECKPOINT_FILE = "trial_state.pt"
#: How often (seconds) a trial checks that its tuner still runs, and its exit code when not.
TUNER_POLL_SECONDS = 1.0
TUNER_GONE_EXIT_CODE = 3

#: The fixed hyper-parameters: (name, type, default, help). Names use underscores, as Syne
#: Tune's ``LocalBackend`` passes config keys verbatim (``--max_seq_length 64``); the dashed
#: spelling of the ``nasprune`` command is accepted as well.
OPTIONS: list[tuple[str, type, Any, str]] = [
    ("model", str, None, "HF model name or path (default: the offline MiniLM-L6)"),
    ("task", str, None, "task name, e.g. rotten_tomatoes"),
    ("train_file", str, None, "own training data (CSV, TSV, JSON or JSONL)"),
    ("validation_file", str, None, "own validation data"),
    ("test_file", str, None, "own test data"),
    ("text_column", str, None, "text column of own data"),
    ("text_pair_column", str, None, "second text column of own data"),
    ("label_column", str, None, "label column of own data"),
    ("max_seq_length", int, 128, "truncate inputs to this many tokens"),
    ("max_train_samples", int, None, "cap on training examples"),
    ("max_eval_samples", int, None, "cap on validation examples"),
    ("max_test_samples", int, None, "cap on test examples"),
    ("search_space", str, "small", "the space the sub-network variables belong to"),
    ("epochs", int, 3, "epochs to fine-tune (MO-ASHA's max_t)"),
    ("learning_rate", float, 2e-5, "peak learning rate of AdamW"),
    ("batch_size", int, 32, "training batch size"),
    ("warmup_ratio", float, 0.1, "share of steps with a linear warm-up"),
    ("seed", int, 0, "seed of training (the classifier head's initialisation, dropout, batch order)"),
    ("data_seed", int, 0, "seed of the data split and subsampling"),
    ("macs_seq_length", int, None, "sequence length of the MAC count (default: max_seq_length)"),
    ("eval_batch_size", int, 128, "evaluation batch size"),
    ("measure_latency", int, 0, "1: also report the sliced sub-network's latency, relative to the full model"),
    ("latency_batch_size", int, 1, "batch size of the latency measurement"),
    ("latency_seq_length", int, None, "sequence length of the latency measurement (default: max_seq_length)"),
    ("num_threads", int, None, "torch CPU threads (default: $OMP_NUM_THREADS, else torch's choice)"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nasprune.snas.worker",
        description="Fine-tune one sub-network of a pre-trained model and report to Syne Tune "
        "after every epoch. Pass the search-space variables as extra --name value pairs.",
    )
    for name, kind, default, help_text in OPTIONS:
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        parser.add_argument(*flags, dest=name, type=kind, default=default, help=help_text)
    parser.add_argument(f"--{ST_CHECKPOINT_DIR}", default=None, help="resume from / save to this folder")
    parser.add_argument(f"--{ST_CONFIG_JSON_FNAME_ARG}", default=None, help="read the config from this JSON file")
    return parser


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _pairs(tokens: Sequence[str]) -> dict[str, Any]:
    """``["--a", "1", "--b", "2"]`` -> ``{"a": 1, "b": 2}``: the search-space variables."""
    if len(tokens) % 2 or not all(t.startswith("--") for t in tokens[::2]):
        raise NaspruneError(f"expected search-space variables as --name value pairs, got: {' '.join(tokens)}")
    return {name[2:]: _number(value) for name, value in zip(tokens[::2], tokens[1::2])}


def parse_config(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The fixed hyper-parameters (a namespace) and the search-space variables (a dict)."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    variables = _pairs(rest)
    json_file = getattr(args, ST_CONFIG_JSON_FNAME_ARG)
    if json_file:
        config = json.loads(Path(json_file).read_text())
        fixed = set(vars(args))
        # Options given on the command line win over the file: re-parse with the file as defaults.
        parser.set_defaults(**{k: v for k, v in config.items() if k in fixed})
        args, rest = parser.parse_known_args(argv)
        variables = {**{k: v for k, v in config.items() if k not in fixed}, **_pairs(rest)}
    return args, variables


class TrialCheckpoint:
    """Everything a paused or interrupted trial needs to go on: weights, trainer state (optimizer,
    learning-rate schedule, CPU and CUDA random state), time spent and the reports so far.

    Nothing is pickled: each epoch is a folder ``epoch-<n>`` with the weights as safetensors,
    the trainer state through :func:`nasprune.checkpoint.save_training_state` and the reports
    as JSON; ``latest.json``, replaced atomically once the folder is complete, names the folder
    to resume from. A trial killed while saving resumes from the previous epoch.
    """

    POINTER = CHECKPOINT_POINTER
    WEIGHTS = "model.safetensors"
    PROGRESS = CHECKPOINT_PROGRESS

    def __init__(self, supernet: SuperNetwork, trainer: Trainer):
        self.supernet = supernet
        self.trainer = trainer
        self.elapsed_before = 0.0  # working time of earlier runs of this trial
        self.reports: list[dict[str, Any]] = []

    def save(self, folder: str, epoch: int) -> None:
        from safetensors.torch import save_model

        path = Path(folder)
        epoch_folder = path / f"epoch-{epoch}"
        shutil.rmtree(epoch_folder, ignore_errors=True)  # left by a run killed while saving
        epoch_folder.mkdir(parents=True)
        save_model(self.supernet.model, str(epoch_folder / self.WEIGHTS))
        save_training_state(epoch_folder, self.trainer.state_dict())
        write_json_atomic({"epoch": epoch, "reports": self.reports}, epoch_folder / self.PROGRESS)
        previous = self._current(path)
        write_json_atomic({"folder": epoch_folder.name}, path / self.POINTER)
        if previous is not None and previous != epoch_folder:
            shutil.rmtree(previous, ignore_errors=True)

    def load(self, folder: str) -> int:
        """Restore from ``folder``; returns the epochs already done (0 when there is no checkpoint)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        path = Path(folder)
        epoch_folder = self._current(path)
        if epoch_folder is None:
            if (path / LEGACY_CHECKPOINT_FILE).exists():
                raise NaspruneError(
                    f"{path / LEGACY_CHECKPOINT_FILE} is a trial checkpoint in an unsafe old format (a pickle, "
                    "which can run code when loaded) and is not loaded; rerun the search with --overwrite-output-dir"
                )
            return 0
        try:
            progress = json.loads((epoch_folder / self.PROGRESS).read_text())
            device = next(self.supernet.parameters()).device
            load_model(self.supernet.model, str(epoch_folder / self.WEIGHTS), device=str(device))
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
            raise NaspruneError(f"corrupt trial checkpoint in {epoch_folder}: {err}") from None
        state = load_training_state(epoch_folder)
        if state is None:
            raise NaspruneError(f"corrupt trial checkpoint in {epoch_folder}: no training state")
        self.trainer.load_state_dict(state)
        self.reports = list(progress["reports"])
        if self.reports:
            self.elapsed_before = float(self.reports[-1]["elapsed_seconds"])
        return int(progress["epoch"])

    def _current(self, path: Path) -> Path | None:
        pointer = path / self.POINTER
        if not pointer.is_file():
            return None
        try:
            name = json.loads(pointer.read_text())["folder"]
        except (ValueError, KeyError, TypeError) as err:
            raise NaspruneError(f"corrupt trial checkpoint pointer {pointer}: {err}") from None
        if not isinstance(name, str) or Path(name).name != name:  # a folder inside the checkpoint only
            raise NaspruneError(f"corrupt trial checkpoint pointer {pointer}: {name!r}")
        return path / name


def watch_tuner() -> threading.Thread | None:
    """Exit this process once the tuner that started it is gone.

    ``LocalBackend`` starts each trial as a child of the tuner; a tuner killed with ``kill -9``
    cannot stop them, and they would train on (holding GPUs and cores) for nobody. The tuner
    exports its pid as :data:`~nasprune.snas.protocol.TUNER_PID_ENV`; a daemon thread checks
    every second that the tuner is still this process's parent (a dead parent's children are
    re-parented at once), or, when something else started this process, that it still runs.
    Without the variable (the worker run by hand) there is nothing to watch.
    """
    text = os.environ.get(TUNER_PID_ENV, "")
    if not text.isdigit():
        return None
    tuner_pid = int(text)
    is_parent = os.getppid() == tuner_pid

    def tuner_alive() -> bool:
        if is_parent:
            return os.getppid() == tuner_pid
        try:
            os.kill(tuner_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, someone else's
            return True
        return True

    def watch() -> None:
        while tuner_alive():
            time.sleep(TUNER_POLL_SECONDS)
        print(f"nasprune.snas.worker: the tuner (pid {tuner_pid}) is gone; exiting", file=sys.stderr, flush=True)
        os._exit(TUNER_GONE_EXIT_CODE)

    thread = threading.Thread(target=watch, name="nasprune-tuner-watch", daemon=True)
    thread.start()
    return thread


def _set_threads(num_threads: int | None) -> None:
    # LocalBackend exports OMP_NUM_THREADS=1 to every trial unless the user set it, so the
    # launcher passes each worker its share of the cores explicitly.
    if num_threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        num_threads = int(os.environ["OMP_NUM_THREADS"])
    if num_threads is not None:
        if num_threads < 1:
            raise NaspruneError(f"--num_threads must be at least 1, got {num_threads}")
        torch.set_num_threads(num_threads)


def run_trial(
    args: argparse.Namespace, variables: dict[str, Any], report: Callable[..., None] | None = None
) -> list[dict]:
    """Fine-tune the sub-network ``variables`` describe and report after every epoch.

    :param report: Called with each epoch's result as keyword arguments, after its checkpoint
        was saved; default: Syne Tune's ``Reporter`` (a line on stdout, which ``LocalBackend``
        reads).

    :return: the reports of this run (a resumed trial reports only the epochs it trains).
    """
    started = time.perf_counter()
    report = report or Reporter()
    _set_threads(args.num_threads)
    # The worker's options carry the names of the nasprune command's flags.
    config = TrainingConfig.from_args(args, "standard")
    config.validate()
    options = DataOptions.from_args(args)  # --data_seed, not --seed, seeds the split
    task_data = options.load()
    model_path = args.model or default_model()
    tokenizer = load_tokenizer(model_path)
    # A task head the pre-trained model lacks is initialised at random: from the trial's seed.
    torch.manual_seed(config.seed)
    hf_model = load_hf_model(model_path, task_data.spec.kind, task_data.num_labels or None)
    data.ensure_padding(tokenizer, hf_model.config)  # decoders: pad = eos, on the right
    supernet = SuperNetwork(hf_model, mode="slice").to(default_device())
    space = get_search_space(args.search_space, supernet.shape)
    unknown = sorted(set(variables) - set(space.variable_names))
    if unknown:
        raise NaspruneError(f"unknown arguments for the '{space.name}' space: {', '.join(unknown[:5])}")
    subnet = space.to_subnet(variables)

    encoded = data.prepare(task_data, tokenizer, options.max_seq_length)
    train_loader = data.make_dataloader(
        encoded["train"], tokenizer, config.batch_size, shuffle=True, seed=config.seed, sort_by_length=True
    )
    macs_length = args.macs_seq_length or options.max_seq_length
    evaluators = {
        split: SubnetEvaluator(
            supernet,
            data.make_dataloader(encoded[split], tokenizer, args.eval_batch_size, sort_by_length=True),
            task_data.metric,
            macs_length,
            cache_embeddings=False,  # the embeddings are trained too
            remember_errors=False,  # and every epoch changes the weights
        )
        for split in ("validation", "test")
    }
    size = evaluators["validation"].size(subnet)
    if args.measure_latency:
        # Measured before training: slicing and timing do not depend on the weights' values.
        latency = LatencyObjective(supernet, args.latency_batch_size, args.latency_seq_length or options.max_seq_length)
        size.update(latency(subnet))
    trainer = Trainer(
        supernet,
        FixedSubnetStrategy(subnet),
        train_loader,
        config,
        regression=task_data.spec.kind == "regression",
        progress=False,
    )
    state = TrialCheckpoint(supernet, trainer)
    checkpoint_config = {ST_CHECKPOINT_DIR: getattr(args, ST_CHECKPOINT_DIR)}
    reports: list[dict[str, Any]] = []

    def after_epoch(epoch: int, history: list, trainer_state: dict) -> None:
        result = {
            "epoch": epoch,
            "valid_error": evaluators["validation"].error(subnet),
            "test_error": evaluators["test"].error(subnet),
            **size,
            "train_loss": history[-1].train_loss,
            "elapsed_seconds": state.elapsed_before + time.perf_counter() - started,
        }
        state.reports.append(result)
        checkpoint_model_at_rung_level(checkpoint_config, state.save, epoch)
        reports.append(result)
        report(**result)

    trainer.save = after_epoch  # the Trainer calls its save hook after every epoch
    done = resume_from_checkpointed_model(checkpoint_config, state.load)
    if done:
        logger.info("resumed from epoch %d of %d", done, config.epochs)
    if done >= config.epochs and state.reports:
        # Nothing left to train (resumed after the last epoch): report the final result again,
        # so that Syne Tune sees a result from this run.
        reports.append(state.reports[-1])
        report(**state.reports[-1])
        return reports
    trainer.train()
    return reports


def configure_trial_process() -> None:
    """Logging and library settings of a process that runs trials (this script, or a Ray worker)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nasprune").setLevel(logging.INFO)
    import datasets
    import transformers

    # Trial logs are for reports and errors; progress bars would only bury them.
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def main(argv: Sequence[str] | None = None) -> int:
    configure_trial_process()
    watch_tuner()
    try:
        args, variables = parse_config(argv)
        run_trial(args, variables)
    except NaspruneError as err:
        print(f"nasprune.snas.worker: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
