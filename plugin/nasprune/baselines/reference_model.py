"""A smaller pre-trained model as a reference point (the paper's DistilBERT row).

The user names any HuggingFace sequence-classification-capable model (``--reference-model``); it
is fine-tuned on the same training split with the same recipe as ``nasprune finetune`` (AdamW
without decay on biases and LayerNorms, linear schedule with warm-up, gradient clipping) and
evaluated on the same validation and test splits. It is one point on the error-vs-size plane: its
own parameter count and MACs relative to the *pruned* model's unpruned size. The model need not be
of a family the super-network supports (DistilBERT is not), so this uses the plain HF forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from nasprune.counting import count_macs
from nasprune.errors import NaspruneError
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.training import TrainingConfig, _optimizer, label_loss


def model_shape(config: Any) -> ModelShape:
    """The encoder shape of any BERT-like config (DistilBERT names its FFN width ``hidden_dim``)."""
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", None)
    if intermediate is None:
        raise NaspruneError(f"cannot read the FFN width of a {getattr(config, 'model_type', '?')} model")
    heads = config.num_attention_heads
    return ModelShape(
        num_layers=config.num_hidden_layers,
        num_heads=heads,
        head_dim=config.hidden_size // heads,
        hidden_size=config.hidden_size,
        intermediate_size=intermediate,
    )


@dataclass(frozen=True)
class ReferenceSize:
    """Size of the reference model, absolute and relative to the pruned model's unpruned size."""

    params: int
    relative_params: float
    macs: int
    relative_macs: float
    shape: ModelShape


def reference_size(model: torch.nn.Module, full_params: int, full_shape: ModelShape, seq_len: int) -> ReferenceSize:
    """Parameters (each shared tensor once) and encoder MACs, relative to the pruned model's full size."""
    params = sum(p.numel() for p in model.parameters())
    shape = model_shape(model.config)
    macs = count_macs(SubNetwork.full(shape), shape, seq_len)
    full_macs = count_macs(SubNetwork.full(full_shape), full_shape, seq_len)
    return ReferenceSize(params, params / full_params, macs, macs / full_macs, shape)


def _inputs(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items() if k != "labels"}


def finetune_model(
    model: torch.nn.Module,
    train_loader: Iterable[dict],
    config: TrainingConfig,
    regression: bool = False,
) -> torch.nn.Module:
    """Plain fine-tuning of a HF task model in place, with the recipe of :class:`~nasprune.training.Trainer`."""
    config.validate()
    device = next(model.parameters()).device
    steps = len(train_loader) * config.epochs  # type: ignore[arg-type]
    optimizer = _optimizer(model, config)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * steps), steps)
    torch.manual_seed(config.seed)
    model.train()
    for epoch in range(config.epochs):
        sampler = getattr(train_loader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        for batch in train_loader:
            logits = model(**_inputs(batch, device)).logits
            loss = label_loss(logits, batch["labels"].to(device), regression)
            if not math.isfinite(loss.item()):
                raise NaspruneError("fine-tuning the reference model diverged; try a smaller --learning-rate")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()
    return model


@torch.inference_mode()
def model_error(model: torch.nn.Module, loader: Iterable[dict], metric: Callable[[np.ndarray, np.ndarray], float]) -> float:
    """``1 - metric`` of a HF task model on a split."""
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    for batch in loader:
        logits.append(model(**_inputs(batch, device)).logits.float().cpu())
        labels.append(batch["labels"])
    return 1.0 - float(metric(torch.cat(logits).numpy(), torch.cat(labels).numpy()))
