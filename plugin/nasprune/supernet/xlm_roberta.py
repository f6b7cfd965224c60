"""XLM-RoBERTa: RoBERTa's architecture under another model type and other HF classes."""

from __future__ import annotations

from nasprune.supernet.base import register_adapter
from nasprune.supernet.roberta import RobertaAdapter


@register_adapter
class XLMRobertaAdapter(RobertaAdapter):
    """``XLMRobertaForSequenceClassification`` and ``XLMRobertaForMultipleChoice``."""

    model_types = ("xlm-roberta",)

    def sequence_classification_classes(self) -> tuple[type, ...]:
        from transformers import XLMRobertaForSequenceClassification

        return (XLMRobertaForSequenceClassification,)

    def multiple_choice_classes(self) -> tuple[type, ...]:
        from transformers import XLMRobertaForMultipleChoice

        return (XLMRobertaForMultipleChoice,)
