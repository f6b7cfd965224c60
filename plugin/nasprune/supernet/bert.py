"""BERT: the pooler's output feeds every task head."""

from __future__ import annotations

import torch
from torch import nn

from nasprune.supernet.base import FamilyAdapter, register_adapter


@register_adapter
class BertAdapter(FamilyAdapter):
    """``BertForSequenceClassification`` and ``BertForMultipleChoice``: pooler -> dropout -> classifier."""

    model_types = ("bert",)
    base_attr = "bert"

    def sequence_classification_classes(self) -> tuple[type, ...]:
        from transformers import BertForSequenceClassification

        return (BertForSequenceClassification,)

    def multiple_choice_classes(self) -> tuple[type, ...]:
        from transformers import BertForMultipleChoice

        return (BertForMultipleChoice,)

    def head_logits(self, model: nn.Module, sequence_output: torch.Tensor, task_kind: str) -> torch.Tensor:
        return self.pooled_logits(model, sequence_output)
