"""Evaluating sub-networks on a fixed split: error, size and MACs for one SubNetwork.

The weight-sharing search evaluates hundreds of sub-networks on the same validation
split. What they all share, the embedding outputs, is computed once; batches are
length-sorted by the data loader so little time goes to padding.

A metric with ``batch_statistics`` and ``from_statistics`` (the LM task's
:class:`~nasprune.data.lm.NextTokenScore`) is summed batch by batch instead of over a whole
split's logits: a causal LM's logits ``[B, T, V]`` would not fit for a split. For a super-network
the batch's hidden states go through the LM head a few sequences at a time
(:data:`LOGITS_PER_CHUNK`), so not even one batch's logits are held at once.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from nasprune.accelerator import Precision, maybe_compile
from nasprune.counting import ParameterCounter, count_macs
from nasprune.memory import release_free_memory
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork

MetricFn = Callable[[np.ndarray, np.ndarray], float]

logger = logging.getLogger(__name__)

#: At most this many logits (sequences x positions x vocabulary) are computed at once when a
#: streamed metric scores a causal LM super-network: 2^26 floats, 256 MiB in fp32.
LOGITS_PER_CHUNK = 1 << 26


def is_streamed(metric: Any) -> bool:
    """Whether ``metric`` is summed batch by batch (``batch_statistics`` / ``from_statistics``)."""
    return hasattr(metric, "batch_statistics") and hasattr(metric, "from_statistics")


def _streamed_statistics(
    supernet: SuperNetwork, hidden: torch.Tensor, ext_mask: torch.Tensor | None, labels: torch.Tensor, metric: Any
) -> torch.Tensor:
    """``metric.batch_statistics`` of the active sub-network on one embedded batch.

    Causal LMs whose adapter exposes the LM head (``lm_logits``) run the layers once and the
    head on a few sequences at a time (:data:`LOGITS_PER_CHUNK`); anything else in one piece.
    """
    lm_logits = getattr(supernet.adapter, "lm_logits", None)
    if lm_logits is None or getattr(supernet, "task_kind", None) != "causal_lm":
        return metric.batch_statistics(supernet.forward_from_embeddings(hidden, ext_mask), labels)
    sequence_output = supernet.encode(hidden, ext_mask)
    length = sequence_output.shape[1]
    vocab = int(getattr(supernet.config, "vocab_size", 0) or 1)
    rows = max(1, LOGITS_PER_CHUNK // max(1, length * vocab))
    total = None
    for start in range(0, sequence_output.shape[0], rows):
        chunk = metric.batch_statistics(
            lm_logits(supernet.model, sequence_output[start : start + rows]), labels[start : start + rows]
        )
        total = chunk if total is None else total + chunk
    return total


@torch.inference_mode()
def predict(supernet: SuperNetwork, loader: Iterable[dict], subnet: SubNetwork | None = None,
            precision: Precision | str | None = None):
    """Logits and labels of a whole split, for ``subnet`` (the full network when None), under
    ``precision`` (None: the process default, :func:`nasprune.accelerator.default_precision`)."""
    supernet.eval()
    device = next(supernet.parameters()).device
    precision = _precision_on(precision, device)
    subnet = subnet or SubNetwork.full(supernet.shape)
    logits, labels = [], []
    with supernet.select(subnet), precision.autocast():
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            labels.append(batch.pop("labels"))
            logits.append(supernet(**batch).float())
    # One copy back per split, not per batch: each copy to the host waits for the device.
    return torch.cat(logits).cpu().numpy(), torch.cat(labels).cpu().numpy()


@torch.inference_mode()
def streamed_metric(supernet: SuperNetwork, loader: Iterable[dict], metric: Any, subnet: SubNetwork | None = None,
                    precision: Precision | str | None = None) -> float:
    """A streamed metric (:func:`is_streamed`) of ``subnet`` (None: the full network) on a split,
    summed batch by batch on the device and read back once."""
    supernet.eval()
    device = next(supernet.parameters()).device
    precision = _precision_on(precision, device)
    subnet = subnet or SubNetwork.full(supernet.shape)
    total = None
    with supernet.select(subnet), precision.autocast():
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            labels = batch.pop("labels")
            statistics = _streamed_statistics(supernet, *supernet.embed(**batch), labels, metric)
            total = statistics if total is None else total + statistics
    if total is None:
        raise ValueError("cannot compute a metric on zero examples")
    return float(metric.from_statistics(total.cpu()))


@torch.inference_mode()
def plain_model_error(model: torch.nn.Module, loader: Iterable[dict], metric: MetricFn,
                      precision: Precision | str | None = None) -> float:
    """``1 - metric`` of a plain HF task model on a split, through its own forward.

    For models no super-network wraps: the reference-model baseline (any family) and an exported
    pruned model loaded back with ``from_pretrained``. Compiled first under ``--compile``
    (:func:`nasprune.accelerator.maybe_compile`): its weights are fixed.
    """
    model.eval()
    device = next(model.parameters()).device
    precision = _precision_on(precision, device)
    forward = maybe_compile(model)
    logits, labels = [], []
    streamed = is_streamed(metric)  # a causal LM: sum each batch's statistics, keep no logits
    total = None
    for batch in loader:
        with precision.autocast():
            output = forward(**{k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "labels"})
        if streamed:
            statistics = metric.batch_statistics(output.logits, batch["labels"].to(device, non_blocking=True))
            total = statistics if total is None else total + statistics
            continue
        logits.append(output.logits.float())
        labels.append(batch["labels"])
    if streamed:
        if total is None:
            raise ValueError("cannot compute a metric on zero examples")
        return 1.0 - float(metric.from_statistics(total.cpu()))
    logits = torch.cat(logits).cpu()
    return 1.0 - float(metric(logits.numpy(), torch.cat(labels).numpy()))


def _precision_on(precision: Precision | str | None, device: torch.device) -> Precision:
    return precision if isinstance(precision, Precision) else Precision.on(precision, device)


class SubnetEvaluator:
    """Measures sub-networks on one split: ``error = 1 - metric``, parameters and MACs.

    :param supernet: the trained super-network
    :param loader: the split, as length-sorted batches
    :param metric: ``metric(logits, labels) -> float`` (higher is better); a streamed one
        (:func:`is_streamed`, the LM task's) is summed batch by batch
    :param macs_seq_length: the sequence length T of the MAC count
    :param cache_embeddings: compute the embedding outputs once and reuse them
    :param journal: a JSON-lines file that records every error measured, so that an
        interrupted search resumes without evaluating anything twice; its first line
        is ``journal_key``, and a journal written for another key is started afresh (with a
        warning naming the settings that differ)
    :param journal_key: everything the errors depend on (the checkpoint's fingerprint, the
        validation split, the length, the metric ...): JSON values
    :param remember_errors: keep each sub-network's error, as in a search, where the weights are
        fixed; ``False`` where they change between calls (during training)
    :param fidelity: the fraction of the split that ``loader`` holds (multi-fidelity search: a
        nested subset, see :func:`nasprune.search.multifidelity.nested_subsets`). Journal lines
        record it when below 1; evaluators of several fidelities share one journal, each
        resuming only its own lines (the subsets themselves belong in ``journal_key``)
    :param precision: the forward passes' :class:`~nasprune.accelerator.Precision` or its name
        (None: the process default); a precision other than fp32 belongs in ``journal_key``
    """

    def __init__(
        self,
        supernet: SuperNetwork,
        loader: Iterable[dict],
        metric: MetricFn,
        macs_seq_length: int = 128,
        cache_embeddings: bool = True,
        journal: str | os.PathLike | None = None,
        journal_key: dict[str, Any] | None = None,
        remember_errors: bool = True,
        fidelity: float = 1.0,
        precision: Precision | str | None = None,
    ):
        if journal is not None and not remember_errors:
            raise ValueError("a journal records remembered errors: it needs remember_errors=True")
        self.supernet = supernet
        self.loader = loader
        self.metric = metric
        self.precision = _precision_on(precision, next(supernet.parameters()).device)
        self.macs_seq_length = macs_seq_length
        self.counter = ParameterCounter(supernet.model)
        self.full_macs = count_macs(SubNetwork.full(supernet.shape), supernet.shape, macs_seq_length)
        self.remember_errors = remember_errors
        self.fidelity = float(fidelity)
        self._errors: dict[SubNetwork, float] = {}  # configs that differ can share a sub-network
        self._journal = None if journal is None else self._open_journal(Path(journal), journal_key or {})
        self._cache: list[tuple] | None = None
        if cache_embeddings:
            self._cache = self._embed_all()

    @torch.inference_mode()
    def _embed_all(self) -> list[tuple]:
        self.supernet.eval()
        device = next(self.supernet.parameters()).device
        cache = []
        for batch in self.loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            labels = batch.pop("labels")  # kept on the device: copied back once per sub-network
            with self.precision.autocast():
                cache.append((self.supernet.embed(**batch), labels))
        return cache

    @torch.inference_mode()
    def predict(self, subnet: SubNetwork) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None:
            return predict(self.supernet, self.loader, subnet, self.precision)
        self.supernet.eval()
        logits, labels = [], []
        with self.supernet.select(subnet), self.precision.autocast():
            for embedded, batch_labels in self._cache:
                logits.append(self.supernet.forward_from_embeddings(*embedded).float())
                labels.append(batch_labels)
        return torch.cat(logits).cpu().numpy(), torch.cat(labels).cpu().numpy()

    @torch.inference_mode()
    def _streamed_score(self, subnet: SubNetwork) -> float:
        """The streamed metric (:func:`is_streamed`) of ``subnet``, from the cached embeddings."""
        if self._cache is None:
            return streamed_metric(self.supernet, self.loader, self.metric, subnet, self.precision)
        self.supernet.eval()
        total = None
        with self.supernet.select(subnet), self.precision.autocast():
            for embedded, batch_labels in self._cache:
                statistics = _streamed_statistics(self.supernet, *embedded, batch_labels, self.metric)
                total = statistics if total is None else total + statistics
        if total is None:
            raise ValueError("cannot compute a metric on zero examples")
        return float(self.metric.from_statistics(total.cpu()))

    def error(self, subnet: SubNetwork) -> float:
        if subnet not in self._errors:
            if is_streamed(self.metric):
                score = self._streamed_score(subnet)
            else:
                logits, labels = self.predict(subnet)
                score = float(self.metric(logits, labels))
            release_free_memory()  # the next sub-network's activations have other shapes
            error = 1.0 - score
            if not self.remember_errors:
                return error
            self.record_error(subnet, error)
        return self._errors[subnet]

    def known_error(self, subnet: SubNetwork) -> float | None:
        """The remembered (or resumed) error of ``subnet``; None when it has not been measured."""
        return self._errors.get(subnet)

    def record_error(self, subnet: SubNetwork, error: float) -> None:
        """Remember and journal an error measured elsewhere on the same weights and split (a
        parallel worker, :mod:`nasprune.parallel_evaluation`); a known sub-network is kept as it is."""
        if not self.remember_errors:
            raise ValueError("this evaluator does not remember errors")
        if subnet in self._errors:
            return
        self._errors[subnet] = float(error)
        if self._journal is not None:
            entry = {"subnet": subnet.to_dict(), "error": self._errors[subnet]}
            if self.fidelity != 1.0:
                entry["fidelity"] = self.fidelity
            self._journal.write(json.dumps(entry) + "\n")
            self._journal.flush()

    @property
    def num_resumed(self) -> int:
        return self._resumed

    def _open_journal(self, path: Path, key: dict[str, Any]):
        header = json.dumps(key, sort_keys=True)
        self._resumed = 0
        if path.is_file():
            lines = path.read_text().splitlines()
            if lines and lines[0] != header:
                logger.warning(
                    "%s was measured with other %s: evaluating afresh", path, _differing_keys(lines[0], key)
                )
            if lines and lines[0] == header:
                num_valid = 0
                for line in lines[1:]:
                    try:
                        entry = json.loads(line)
                        subnet, error = SubNetwork.from_dict(entry["subnet"]), float(entry["error"])
                        fidelity = float(entry.get("fidelity", 1.0))
                    except (ValueError, KeyError, TypeError, AttributeError):
                        break  # a line cut short by a crash: everything before it stands
                    num_valid += 1
                    if fidelity == self.fidelity:  # other fidelities' lines are other evaluators'
                        self._errors[subnet] = error
                self._resumed = len(self._errors)
                path.write_text("\n".join([header] + lines[1 : 1 + num_valid]) + "\n")
                return path.open("a")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + "\n")
        return path.open("a")

    def close(self) -> None:
        """Close the journal (further errors are still remembered, no longer recorded)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def size(self, subnet: SubNetwork) -> dict[str, float]:
        """Parameters and MACs, absolute and relative to the unpruned model."""
        params = self.counter.count(subnet)
        macs = count_macs(subnet, self.supernet.shape, self.macs_seq_length)
        return {
            "params": params,
            "relative_params": params / self.counter.total,
            "macs": macs,
            "relative_macs": macs / self.full_macs,
        }

    def measure(self, subnet: SubNetwork) -> dict[str, float]:
        return {"valid_error": self.error(subnet), **self.size(subnet)}


def _differing_keys(recorded_header: str, key: dict[str, Any]) -> str:
    """The settings of ``key`` that a journal's first line records differently, for the notice."""
    try:
        recorded = json.loads(recorded_header)
    except ValueError:
        recorded = None
    if not isinstance(recorded, dict):
        return "settings (its first line is not a journal header)"
    normalised = json.loads(json.dumps(key))  # tuples as lists, as the header holds them
    names = sorted(k for k in recorded.keys() | normalised.keys() if recorded.get(k) != normalised.get(k))
    return "settings: " + ", ".join(names)
