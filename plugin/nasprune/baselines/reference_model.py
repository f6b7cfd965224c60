"""A smaller pre-trained model as a reference point (the paper's DistilBERT row).

The user names any HuggingFace sequence-classification-capable model (``--reference-model``); it
is fine-tuned on the same training split by the same :class:`~nasprune.training.Trainer` loop and
recipe as ``nasprune finetune`` (AdamW without decay on biases and LayerNorms, linear schedule with
warm-up, gradient clipping) and evaluated on the same validation and test splits. It is one point on the error-vs-size plane: its
own parameter count and MACs relative to the *pruned* model's unpruned size. The model need not be
of a family the super-network supports (DistilBERT is not), so this uses the plain HF forward
(measured by :func:`nasprune.evaluation.plain_model_error`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch

from nasprune.counting import count_macs
from nasprune.errors import NaspruneError
from nasprune.subnet import DECODER_MODEL_TYPES, ModelShape, SubNetwork
from nasprune.training import Trainer, TrainingConfig, label_loss


def model_shape(config: Any) -> ModelShape:
    """The encoder shape of any BERT-like config (DistilBERT names its FFN width ``hidden_dim``);
    a decoder's own shape (causal attention, grouped key/value heads, GPT-2's ``n_inner``)."""
    if getattr(config, "model_type", "") in DECODER_MODEL_TYPES:
        return ModelShape.from_config(config)
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


class PlainModelTrainer(Trainer):
    """The :class:`~nasprune.training.Trainer` (its seeding, batch order, schedule and divergence
    checks) for a plain HF task model of any family, which a super-network may not support: each
    step trains the whole model on the labels, as strategy ``standard`` trains a super-network.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train_loader: Iterable[dict],
        config: TrainingConfig,
        regression: bool = False,
        progress: bool = False,
    ):
        # No strategy: there are no sub-networks to plan, and nothing evaluates them per epoch.
        super().__init__(model, None, train_loader, config, regression, progress=progress)  # type: ignore[arg-type]

    def train_step(self, batch: dict, step: int) -> torch.Tensor:
        """One optimizer step of the plain HF forward on ``batch``; its label loss (on the device)."""
        labels = batch.pop("labels")
        with self.autocast():
            loss = label_loss(self.supernet(**batch).logits, labels, self.regression)
        self.backward(loss)
        self.optimizer_step()
        return loss.detach()


def finetune_model(
    model: torch.nn.Module,
    train_loader: Iterable[dict],
    config: TrainingConfig,
    regression: bool = False,
    progress: bool = False,
) -> torch.nn.Module:
    """Fine-tune a HF task model in place with :class:`PlainModelTrainer`; returns it in eval mode."""
    PlainModelTrainer(model, train_loader, config, regression, progress).train()
    model.eval()
    return model
