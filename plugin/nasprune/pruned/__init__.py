"""Physically pruned BERT, RoBERTa (and XLM-RoBERTa), DistilBERT and ELECTRA models: configurations
and ``PreTrainedModel`` classes.

:mod:`nasprune.export` cuts these models out of a dense one. Importing this package registers them
with the ``transformers`` Auto classes (:func:`register_auto_classes`), so
``AutoModelForSequenceClassification.from_pretrained(exported_dir)`` loads an exported model;
``import nasprune`` does so as soon as ``transformers`` is imported (see :mod:`nasprune.autoclasses`).
``configuration.py`` and ``modeling.py`` are self-contained (they import only ``torch``,
``transformers`` and ``huggingface_hub``) because ``save_pretrained`` copies them next to the
weights, so exported models also load with ``trust_remote_code=True`` where nasprune is not
installed.
"""

from dataclasses import dataclass

from transformers import AutoConfig, AutoModel, AutoModelForMultipleChoice, AutoModelForSequenceClassification

from nasprune.pruned.configuration import (
    PrunedBertConfig,
    PrunedDistilBertConfig,
    PrunedElectraConfig,
    PrunedRobertaConfig,
)
from nasprune.pruned.configuration_deberta_v2 import PrunedDebertaV2Config
from nasprune.pruned.configuration_modernbert import PrunedModernBertConfig
from nasprune.pruned.modeling_deberta_v2 import (
    PrunedDebertaV2ForMultipleChoice,
    PrunedDebertaV2ForSequenceClassification,
    PrunedDebertaV2Model,
)
from nasprune.pruned.modeling_modernbert import (
    PrunedModernBertForMultipleChoice,
    PrunedModernBertForSequenceClassification,
    PrunedModernBertModel,
)
from nasprune.pruned.modeling import (
    PrunedBertForMultipleChoice,
    PrunedBertForSequenceClassification,
    PrunedBertModel,
    PrunedBertPreTrainedModel,
    PrunedDistilBertForMultipleChoice,
    PrunedDistilBertForSequenceClassification,
    PrunedDistilBertModel,
    PrunedElectraForMultipleChoice,
    PrunedElectraForSequenceClassification,
    PrunedElectraModel,
    PrunedRobertaForMultipleChoice,
    PrunedRobertaForSequenceClassification,
    PrunedRobertaModel,
    PrunedRobertaPreTrainedModel,
)


@dataclass(frozen=True)
class PrunedFamily:
    """The pruned classes that replace one dense HF family."""

    config: type
    base_model: type
    sequence_classification: type
    multiple_choice: type

    def task_class(self, task_kind: str) -> type:
        """The model class of a task kind ("multiple_choice", or any classification/regression)."""
        return self.multiple_choice if task_kind == "multiple_choice" else self.sequence_classification


#: Dense HF ``model_type`` -> its pruned counterpart.
PRUNED_FAMILIES: dict[str, PrunedFamily] = {
    "bert": PrunedFamily(
        PrunedBertConfig, PrunedBertModel, PrunedBertForSequenceClassification, PrunedBertForMultipleChoice
    ),
    "roberta": PrunedFamily(
        PrunedRobertaConfig,
        PrunedRobertaModel,
        PrunedRobertaForSequenceClassification,
        PrunedRobertaForMultipleChoice,
    ),
    "distilbert": PrunedFamily(
        PrunedDistilBertConfig,
        PrunedDistilBertModel,
        PrunedDistilBertForSequenceClassification,
        PrunedDistilBertForMultipleChoice,
    ),
    "electra": PrunedFamily(
        PrunedElectraConfig,
        PrunedElectraModel,
        PrunedElectraForSequenceClassification,
        PrunedElectraForMultipleChoice,
    ),
}
PRUNED_FAMILIES["deberta-v2"] = PrunedFamily(
    PrunedDebertaV2Config,
    PrunedDebertaV2Model,
    PrunedDebertaV2ForSequenceClassification,
    PrunedDebertaV2ForMultipleChoice,
)
PRUNED_FAMILIES["modernbert"] = PrunedFamily(
    PrunedModernBertConfig,
    PrunedModernBertModel,
    PrunedModernBertForSequenceClassification,
    PrunedModernBertForMultipleChoice,
)
# XLM-RoBERTa is RoBERTa's architecture (its HF classes are RoBERTa's code under other names), so
# it exports to the pruned RoBERTa classes.
PRUNED_FAMILIES["xlm-roberta"] = PRUNED_FAMILIES["roberta"]


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel*`` load pruned models by their ``model_type``. Idempotent."""
    for family in PRUNED_FAMILIES.values():
        AutoConfig.register(family.config.model_type, family.config, exist_ok=True)
        AutoModel.register(family.config, family.base_model, exist_ok=True)
        AutoModelForSequenceClassification.register(
            family.config, family.sequence_classification, exist_ok=True
        )
        AutoModelForMultipleChoice.register(family.config, family.multiple_choice, exist_ok=True)


register_auto_classes()

__all__ = [
    "PRUNED_FAMILIES",
    "PrunedBertConfig",
    "PrunedBertForMultipleChoice",
    "PrunedBertForSequenceClassification",
    "PrunedBertModel",
    "PrunedBertPreTrainedModel",
    "PrunedDistilBertConfig",
    "PrunedDistilBertForMultipleChoice",
    "PrunedDistilBertForSequenceClassification",
    "PrunedDistilBertModel",
    "PrunedElectraConfig",
    "PrunedElectraForMultipleChoice",
    "PrunedElectraForSequenceClassification",
    "PrunedElectraModel",
    "PrunedDebertaV2Config",
    "PrunedDebertaV2ForMultipleChoice",
    "PrunedDebertaV2ForSequenceClassification",
    "PrunedDebertaV2Model",
    "PrunedFamily",
    "PrunedModernBertConfig",
    "PrunedModernBertForMultipleChoice",
    "PrunedModernBertForSequenceClassification",
    "PrunedModernBertModel",
    "PrunedRobertaConfig",
    "PrunedRobertaForMultipleChoice",
    "PrunedRobertaForSequenceClassification",
    "PrunedRobertaModel",
    "PrunedRobertaPreTrainedModel",
    "register_auto_classes",
]
