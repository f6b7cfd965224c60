"""RoBERTa: classification reads the <s> token itself; multiple choice goes through the pooler."""

from __future__ import annotations

import torch
from torch import nn

from nasprune.supernet.base import FamilyAdapter, register_adapter


@register_adapter
class RobertaAdapter(FamilyAdapter):
    """``RobertaForSequenceClassification`` and ``RobertaForMultipleChoice``."""

    model_types = ("roberta",)
    base_attr = "roberta"

    def position_offset(self, config) -> int:
        # Position ids count from padding_idx + 1 (create_position_ids_from_input_ids).
        return config.pad_token_id + 1

    def sequence_classification_classes(self) -> tuple[type, ...]:
        from transformers import RobertaForSequenceClassification

        return (RobertaForSequenceClassification,)

    def multiple_choice_classes(self) -> tuple[type, ...]:
        from transformers import RobertaForMultipleChoice

        return (RobertaForMultipleChoice,)

    def head_logits(self, model: nn.Module, sequence_output: torch.Tensor, task_kind: str) -> torch.Tensor:
        if task_kind == "multiple_choice":
            return self.pooled_logits(model, sequence_output)
        # RobertaClassificationHead takes the whole sequence output and picks <s> itself.
        return model.classifier(sequence_output)
