"""ELECTRA: BERT's encoder layers; embeddings may be narrower than the hidden size (a projection
follows them), classification reads the first token through a GELU head, multiple choice through
a sequence summary."""

from __future__ import annotations

import torch
from torch import nn

from nasprune.supernet.base import FamilyAdapter, register_adapter


@register_adapter
class ElectraAdapter(FamilyAdapter):
    """``ElectraForSequenceClassification`` and ``ElectraForMultipleChoice``."""

    model_types = ("electra",)
    base_attr = "electra"

    def sequence_classification_classes(self) -> tuple[type, ...]:
        from transformers import ElectraForSequenceClassification

        return (ElectraForSequenceClassification,)

    def multiple_choice_classes(self) -> tuple[type, ...]:
        from transformers import ElectraForMultipleChoice

        return (ElectraForMultipleChoice,)

    def embed(self, model: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        hidden = super().embed(model, input_ids, token_type_ids)
        project = self._projection(model)
        return hidden if project is None else project(hidden)

    def per_token_modules(self, model: nn.Module) -> list[nn.Module]:
        project = self._projection(model)
        return [] if project is None else [project]

    def _projection(self, model: nn.Module) -> nn.Linear | None:
        # ElectraModel has it only when embedding_size != hidden_size.
        return getattr(self.base_model(model), "embeddings_project", None)

    def head_logits(self, model: nn.Module, sequence_output: torch.Tensor, task_kind: str) -> torch.Tensor:
        if task_kind == "multiple_choice":
            return model.classifier(model.sequence_summary(sequence_output))
        # ElectraClassificationHead takes the whole sequence output and picks the first token itself.
        return model.classifier(sequence_output)
