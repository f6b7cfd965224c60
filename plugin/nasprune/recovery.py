"""Recovery training: fine-tune chosen sub-networks after the search, before they are used.

A sub-network of a super-network shares its weights with every other sub-network; once it is
chosen, a short fine-tuning of its own weights usually wins back accuracy. By default it distils
from the full super-network (the loss the ``full`` strategy trains its sub-networks with:
:func:`nasprune.training.distillation_loss` at the checkpoint's temperature; the teacher is the
full network, frozen, in eval mode); ``loss="ce"`` trains on the labels alone.

* :class:`RecoveryOptions`: epochs, loss, learning rate (default: the checkpoint's).
* :class:`RecoveryTrainer`: the :class:`~nasprune.training.Trainer` of one fixed sub-network
  with a frozen teacher.
* :class:`Recovery`: recovery on one opened checkpoint: its training split, its teacher, and the
  validation and test errors of a sub-network measured before and after.
* :func:`recover_front`: every Pareto point of a weight-sharing search, written as a new front
  in the results format (``nasprune recover``). ``nasprune export --finetune-epochs`` uses
  :class:`Recovery` for its one point.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch

from nasprune import analysis, data
from nasprune.errors import NaspruneError
from nasprune.evaluation import SubnetEvaluator
from nasprune.export import (
    SearchResults,
    check_results_checkpoint,
    check_row_has_weights,
    mask_scales_for_row,
    pareto_front,
    subnet_from_row,
)
from nasprune.objectives import EVAL_BATCH_SIZE
from nasprune.results import (
    begin_search_outputs,
    build_summary,
    check_search_output_dir,
    result_row,
    write_results,
)
from nasprune.scales import apply_scales
from nasprune.session import CheckpointSession, default_device
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork
from nasprune.training import FixedSubnetStrategy, Trainer, TrainingConfig, distillation_loss, label_loss

logger = logging.getLogger("nasprune")

#: The recovery losses: distillation from the full super-network, or cross-entropy on the labels.
RECOVERY_LOSSES = ("distill", "ce")
#: The objectives a recovered front can keep: recovery changes errors, not sizes; latency is not
#: measured again, so a front searched with it is written with parameters instead.
_SIZE_OBJECTIVES = ("relative_params", "relative_macs")


@dataclass
class RecoveryOptions:
    """How a chosen sub-network is fine-tuned: ``epochs`` over the checkpoint's training split,
    with ``loss`` (``distill`` or ``ce``) at ``learning_rate`` (None: the checkpoint's)."""

    epochs: int = 1
    loss: str = "distill"
    learning_rate: float | None = None

    def validate(self) -> None:
        if self.epochs < 0:
            raise NaspruneError(f"--finetune-epochs must be at least 0, got {self.epochs}")
        if self.loss not in RECOVERY_LOSSES:
            raise NaspruneError(f"--recovery-loss must be one of {', '.join(RECOVERY_LOSSES)}, got {self.loss!r}")
        if self.learning_rate is not None and not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise NaspruneError(f"--finetune-learning-rate must be positive, got {self.learning_rate}")


def recovery_config(training: dict[str, Any], options: RecoveryOptions) -> TrainingConfig:
    """The :class:`TrainingConfig` of recovery: the checkpoint's recorded training settings (batch
    size, temperature, seed, warm-up, weight decay) with ``options``' epochs and learning rate."""
    defaults = TrainingConfig()
    recorded = {name: training.get(name, getattr(defaults, name)) for name in (
        "learning_rate", "batch_size", "seed", "warmup_ratio", "weight_decay", "max_grad_norm", "temperature")}
    if options.learning_rate is not None:
        recorded["learning_rate"] = options.learning_rate
    return TrainingConfig(epochs=options.epochs, strategy=f"recovery-{options.loss}", num_random_subnets=0, **recorded)


class RecoveryTrainer(Trainer):
    """Trains ``supernet`` restricted to ``subnet``: each step, the label loss of the sub-network,
    or with a ``teacher`` the distillation loss against the frozen teacher's logits."""

    def __init__(
        self,
        supernet: SuperNetwork,
        subnet: SubNetwork,
        train_loader: Iterable[dict],
        config: TrainingConfig,
        teacher: SuperNetwork | None = None,
        regression: bool = False,
        progress: bool = False,
    ):
        super().__init__(supernet, FixedSubnetStrategy(subnet), train_loader, config, regression, progress=progress)
        self.subnet = subnet
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()

    def train_step(self, batch: dict, step: int) -> torch.Tensor:
        labels = batch.pop("labels")
        with self.autocast():
            with self.supernet.select(self.subnet):
                logits = self.supernet(**batch)
            if self.teacher is None:
                loss = label_loss(logits, labels, self.regression)
            else:
                with torch.no_grad(), self.teacher.select(None):
                    teacher_logits = self.teacher(**batch)
                loss = distillation_loss(logits, teacher_logits, labels, self.config.temperature, self.regression)
        self.backward(loss)
        self.optimizer_step()
        return loss.detach()  # read only every log_every steps: no host sync per step


@dataclass
class Recovered:
    """A recovered sub-network: a super-network copy whose weights were fine-tuned for it, and the
    wall-clock seconds that took."""

    supernet: SuperNetwork
    seconds: float


class Recovery:
    """Recovery training on an opened checkpoint: its training split, its full super-network as the
    teacher, its validation and test splits for the errors before and after.

    :param session: the checkpoint, its data loaded (``session.task_data``)
    :param options: epochs, loss and learning rate
    :param device: where training and measuring run (default: the GPU when there is one)
    """

    def __init__(
        self,
        session: CheckpointSession,
        options: RecoveryOptions,
        device: torch.device | None = None,
        eval_batch_size: int = EVAL_BATCH_SIZE,
        progress: bool = False,
    ):
        options.validate()
        self.session = session
        self.options = options
        self.device = device or default_device()
        self.progress = progress
        self.config = recovery_config(session.info.training or {}, options)
        if options.epochs:
            self.config.validate()
        task_data = session.task_data
        self.metric = task_data.metric
        self.regression = task_data.spec.kind == "regression"
        self.macs_length = session.data_options.max_seq_length
        self.loaders = session.eval_loaders(eval_batch_size)
        self.train_loader = data.make_dataloader(
            session.encoded["train"], session.tokenizer, self.config.batch_size, shuffle=True,
            seed=self.config.seed, sort_by_length=True,
        )
        self._teacher: SuperNetwork | None = None

    @property
    def teacher(self) -> SuperNetwork:
        """The checkpoint's full super-network, frozen and in eval mode (loaded once)."""
        if self._teacher is None:
            teacher = self.session.load_supernet(self.macs_length).to(self.device).eval()
            for param in teacher.parameters():
                param.requires_grad_(False)
            self._teacher = teacher
        return self._teacher

    def settings(self) -> dict[str, Any]:
        """What recovery did, as export metadata and summaries record it."""
        return {
            "epochs": self.options.epochs,
            "loss": self.options.loss,
            "teacher": "the full super-network (frozen, eval mode)" if self.options.loss == "distill" else None,
            "learning_rate": self.config.learning_rate,
            "batch_size": self.config.batch_size,
            "temperature": self.config.temperature if self.options.loss == "distill" else None,
            "warmup_ratio": self.config.warmup_ratio,
            "weight_decay": self.config.weight_decay,
            "seed": self.config.seed,
            "train_examples": len(self.session.encoded["train"]),
        }

    def measure(self, supernet: SuperNetwork, subnet: SubNetwork) -> dict[str, float]:
        """``valid_error`` and ``test_error`` of ``subnet`` on ``supernet``'s weights, measured now,
        with its ``params``, ``relative_params``, ``macs`` and ``relative_macs``."""
        supernet.to(self.device).eval()
        valid = SubnetEvaluator(supernet, self.loaders["validation"], self.metric, self.macs_length,
                                cache_embeddings=False, remember_errors=False)
        test = SubnetEvaluator(supernet, self.loaders["test"], self.metric, self.macs_length,
                               cache_embeddings=False, remember_errors=False)
        return valid.measure(subnet) | {"test_error": test.error(subnet)}

    def train(self, source: torch.nn.Module, subnet: SubNetwork) -> Recovered:
        """A copy of ``source`` (a super-network or HF model; left as it was) fine-tuned for
        ``subnet``; with 0 epochs the copy is untrained."""
        model = source.model if isinstance(source, SuperNetwork) else source
        mode = source.mode if isinstance(source, SuperNetwork) else "slice"
        # Copy the HF model, not the super-network: SubNetwork (held by it) refuses deepcopy's setattr.
        student = SuperNetwork(copy.deepcopy(model), mode=mode).to(self.device)
        for param in student.parameters():
            param.requires_grad_(True)
        started = time.perf_counter()
        if self.options.epochs:
            teacher = self.teacher if self.options.loss == "distill" else None
            RecoveryTrainer(student, subnet, self.train_loader, self.config, teacher, self.regression,
                            self.progress).train()
        student.eval()
        return Recovered(student, time.perf_counter() - started)


def split_settings(found: SearchResults) -> dict[str, Any]:
    """The split settings (seed, caps, length) the results were measured with, from their summary:
    data files come from the checkpoint only, a results folder does not choose files to read."""
    recorded = found.summary.get("data_options")
    names = ("seed", "max_seq_length", "max_eval_samples", "max_test_samples")
    if not isinstance(recorded, dict):
        return {}
    return {k: v for k, v in recorded.items() if k in names and v is not None}


def refuse_recovered_results(found: SearchResults) -> None:
    """Recovered fronts hold errors of weights that were not kept: nothing can be cut out for them."""
    if "recovery" in found.summary:
        raise NaspruneError(
            f"{found.directory} holds a recovered front ('nasprune recover'): its rows were fine-tuned and "
            "those weights were not kept; export from the results it was made from, with --finetune-epochs"
        )


def recover_front(
    results: str | os.PathLike,
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    options: RecoveryOptions,
    data_overrides: dict[str, Any] | None = None,
    eval_batch_size: int = EVAL_BATCH_SIZE,
    device: torch.device | None = None,
    overwrite: bool = False,
    progress: bool = True,
):
    """Recovery-train every Pareto point of ``results`` (a search of ``checkpoint``) and write the
    retrained front to ``output_dir`` in the results format.

    One row per input Pareto point (with a finite validation error): the same ``trial_id`` and
    sizes, ``valid_error`` and ``test_error`` measured after recovery, ``valid_error_before`` and
    ``test_error_before`` measured on the checkpoint's weights before it, and ``recovery_seconds``.
    ``pareto`` marks the recovered front; the summary's ``method`` is the source's with
    ``+recovery`` (so ``nasprune compare`` shows both) and ``recovery`` records the settings.
    :return: a :class:`nasprune.results.SearchResult`
    """
    if eval_batch_size < 1:
        raise NaspruneError(f"--eval-batch-size must be at least 1, got {eval_batch_size}")
    options.validate()
    if options.epochs < 1:
        raise NaspruneError(f"--finetune-epochs must be at least 1 to recover a front, got {options.epochs}")
    output_dir = Path(output_dir)
    found = SearchResults.load(results)
    refuse_recovered_results(found)
    if output_dir.resolve() == found.directory.resolve():
        raise NaspruneError(
            f"--output-dir {output_dir} is the results folder being recovered: choose another folder, so both "
            "fronts stay side by side"
        )
    front = pareto_front(found.table)
    front = front[np.isfinite(front["valid_error"].to_numpy(dtype=float))].reset_index(drop=True)
    if front.empty:
        raise NaspruneError(f"the results in {found.directory} have no Pareto point with a finite validation error")
    for _, row in front.iterrows():
        check_row_has_weights(found, row)
    session = CheckpointSession(checkpoint, {**split_settings(found), **(data_overrides or {})}, torch.device("cpu"))
    check_results_checkpoint(found, session.path, session.info.fingerprint)
    source_objectives = list(found.summary.get("objectives") or ["valid_error", "relative_params"])
    metrics = ["valid_error", *[m for m in source_objectives[1:] if m in _SIZE_OBJECTIVES]]
    if len(metrics) < 2:
        metrics.append("relative_params")
    method = f"{found.method}+recovery"
    search_space = str(found.summary.get("search_space", "?"))
    seed = int(found.summary.get("seed", 0) or 0)
    check_search_output_dir(
        output_dir, {"checkpoint": str(session.path), "method": method, "search_space": search_space,
                     "objectives": metrics, "seed": seed}, overwrite,
    )
    try:
        session.task_data
    except NaspruneError as err:
        raise NaspruneError(f"cannot load the checkpoint's data to recover the front ({err})") from None
    recovery = Recovery(session, options, device, eval_batch_size, progress)
    supernet = session.load_supernet(session.data_options.max_seq_length)
    begin_search_outputs(output_dir, overwrite)

    started = time.perf_counter()
    search_seconds = float(found.summary.get("search_seconds", 0.0) or 0.0)
    rows = []
    for _, row in front.iterrows():
        subnet = subnet_from_row(row)
        supernet.check(subnet)
        scales = mask_scales_for_row(found, row, subnet)
        source = supernet if scales is None else SuperNetwork(apply_scales(supernet.model, subnet, scales))
        before = recovery.measure(source, subnet)
        recovered = recovery.train(source, subnet)
        after = recovery.measure(recovered.supernet, subnet)
        measured = {
            **after,
            "valid_error_before": before["valid_error"],
            "test_error_before": before["test_error"],
            "recovery_seconds": recovered.seconds,
            "elapsed_seconds": search_seconds + time.perf_counter() - started,
        }
        rows.append(result_row(int(row["trial_id"]), subnet, measured))
        logger.info(
            "trial %d: valid error %.4f before recovery, %.4f after (%.0fs)",
            int(row["trial_id"]), before["valid_error"], after["valid_error"], recovered.seconds,
        )
        del recovered, source
    recovery_seconds = time.perf_counter() - started
    table = pd.DataFrame(rows)
    table["pareto"] = analysis.pareto_mask(table[metrics].to_numpy(dtype=float))
    full = SubNetwork.full(supernet.shape)
    full_model = recovery.measure(supernet, full)
    summary = build_summary(
        table, metrics, source=session.summary_source(), method=method, search_space=search_space, seed=seed,
        run={"search_seconds": search_seconds + recovery_seconds, "recovery_seconds": recovery_seconds},
        full_model=full_model,
        details={
            # A baseline's settings stay, so that compare still counts the front among the baselines.
            **({"baseline": found.summary["baseline"]} if "baseline" in found.summary else {}),
            "recovery": {**recovery.settings(), "source_results": str(found.directory),
                         "source_method": found.method, "source_objectives": source_objectives},
        },
    )
    return write_results(table, summary, metrics, output_dir)
