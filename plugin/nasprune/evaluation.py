"""Evaluating sub-networks on a fixed split: error, size and MACs for one SubNetwork.

The weight-sharing search evaluates hundreds of sub-networks on the same validation
split. What they all share, the embedding outputs, is computed once; batches are
length-sorted by the data loader so little time goes to padding.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from nasprune.counting import ParameterCounter, count_macs
from nasprune.memory import release_free_memory
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork

MetricFn = Callable[[np.ndarray, np.ndarray], float]

logger = logging.getLogger(__name__)


@torch.inference_mode()
def predict(supernet: SuperNetwork, loader: Iterable[dict], subnet: SubNetwork | None = None):
    """Logits and labels of a whole split, for ``subnet`` (the full network when None)."""
    supernet.eval()
    device = next(supernet.parameters()).device
    subnet = subnet or SubNetwork.full(supernet.shape)
    logits, labels = [], []
    with supernet.select(subnet):
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            labels.append(batch.pop("labels").cpu())
            logits.append(supernet(**batch).float().cpu())
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


@torch.inference_mode()
def plain_model_error(model: torch.nn.Module, loader: Iterable[dict], metric: MetricFn) -> float:
    """``1 - metric`` of a plain HF task model on a split, through its own forward.

    For models no super-network wraps: the reference-model baseline (any family) and an exported
    pruned model loaded back with ``from_pretrained``.
    """
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    for batch in loader:
        logits.append(model(**{k: v.to(device) for k, v in batch.items() if k != "labels"}).logits.float().cpu())
        labels.append(batch["labels"])
    return 1.0 - float(metric(torch.cat(logits).numpy(), torch.cat(labels).numpy()))


class SubnetEvaluator:
    """Measures sub-networks on one split: ``error = 1 - metric``, parameters and MACs.

    :param supernet: the trained super-network
    :param loader: the split, as length-sorted batches
    :param metric: ``metric(logits, labels) -> float`` (higher is better)
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
    ):
        if journal is not None and not remember_errors:
            raise ValueError("a journal records remembered errors: it needs remember_errors=True")
        self.supernet = supernet
        self.loader = loader
        self.metric = metric
        self.macs_seq_length = macs_seq_length
        self.counter = ParameterCounter(supernet.model)
        self.full_macs = count_macs(SubNetwork.full(supernet.shape), supernet.shape, macs_seq_length)
        self.remember_errors = remember_errors
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
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels").cpu()
            cache.append((self.supernet.embed(**batch), labels))
        return cache

    @torch.inference_mode()
    def predict(self, subnet: SubNetwork) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None:
            return predict(self.supernet, self.loader, subnet)
        self.supernet.eval()
        logits, labels = [], []
        with self.supernet.select(subnet):
            for embedded, batch_labels in self._cache:
                logits.append(self.supernet.forward_from_embeddings(*embedded).float().cpu())
                labels.append(batch_labels)
        return torch.cat(logits).numpy(), torch.cat(labels).numpy()

    def error(self, subnet: SubNetwork) -> float:
        if subnet not in self._errors:
            logits, labels = self.predict(subnet)
            release_free_memory()  # the next sub-network's activations have other shapes
            error = 1.0 - float(self.metric(logits, labels))
            if not self.remember_errors:
                return error
            self._errors[subnet] = error
            if self._journal is not None:
                line = json.dumps({"subnet": subnet.to_dict(), "error": self._errors[subnet]})
                self._journal.write(line + "\n")
                self._journal.flush()
        return self._errors[subnet]

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
                for line in lines[1:]:
                    try:
                        entry = json.loads(line)
                        self._errors[SubNetwork.from_dict(entry["subnet"])] = float(entry["error"])
                    except (ValueError, KeyError, TypeError):
                        break  # a line cut short by a crash: everything before it stands
                self._resumed = len(self._errors)
                path.write_text("\n".join([header] + lines[1 : 1 + self._resumed]) + "\n")
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
