"""Physically pruned BERT/RoBERTa models: configurations and ``PreTrainedModel`` classes.

:mod:`nasprune.export` cuts these models out of a dense one and registers them with the
``transformers`` Auto classes. ``configuration.py`` and ``modeling.py`` are self-contained (they
import only ``torch``, ``transformers`` and ``huggingface_hub``) because ``save_pretrained`` copies
them next to the weights, so exported models also load with ``trust_remote_code=True`` where
nasprune is not installed.
"""

from nasprune.pruned.configuration import PrunedBertConfig, PrunedRobertaConfig
from nasprune.pruned.modeling import (
    PrunedBertForMultipleChoice,
    PrunedBertForSequenceClassification,
    PrunedBertModel,
    PrunedBertPreTrainedModel,
    PrunedRobertaForMultipleChoice,
    PrunedRobertaForSequenceClassification,
    PrunedRobertaModel,
    PrunedRobertaPreTrainedModel,
)

__all__ = [
    "PrunedBertConfig",
    "PrunedBertForMultipleChoice",
    "PrunedBertForSequenceClassification",
    "PrunedBertModel",
    "PrunedBertPreTrainedModel",
    "PrunedRobertaConfig",
    "PrunedRobertaForMultipleChoice",
    "PrunedRobertaForSequenceClassification",
    "PrunedRobertaModel",
    "PrunedRobertaPreTrainedModel",
]
