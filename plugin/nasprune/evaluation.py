"""Evaluating sub-networks on a fixed split: error, size and MACs for one SubNetwork.

The weight-sharing search evaluates hundreds of sub-networks on the same validation
split. What they all share, the embedding outputs, is computed once; batches are
length-sorted by the data loader so little time goes to padding.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

from nasprune.counting import ParameterCounter, count_macs
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork

MetricFn = Callable[[np.ndarray, np.ndarray], float]


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


class SubnetEvaluator:
    """Measures sub-networks on one split: ``error = 1 - metric``, parameters and MACs.

    :param supernet: the trained super-network
    :param loader: the split, as length-sorted batches
    :param metric: ``metric(logits, labels) -> float`` (higher is better)
    :param macs_seq_length: the sequence length T of the MAC count
    :param cache_embeddings: compute the embedding outputs once and reuse them
    """

    def __init__(
        self,
        supernet: SuperNetwork,
        loader: Iterable[dict],
        metric: MetricFn,
        macs_seq_length: int = 128,
        cache_embeddings: bool = True,
    ):
        self.supernet = supernet
        self.loader = loader
        self.metric = metric
        self.macs_seq_length = macs_seq_length
        self.counter = ParameterCounter(supernet.model)
        self.full_macs = count_macs(SubNetwork.full(supernet.shape), supernet.shape, macs_seq_length)
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
        logits, labels = self.predict(subnet)
        return 1.0 - float(self.metric(logits, labels))

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
