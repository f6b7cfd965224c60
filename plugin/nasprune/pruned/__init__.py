"""Physically pruned BERT, RoBERTa (and XLM-RoBERTa), DistilBERT and ELECTRA models (and the
families of their own files: DeBERTa-v2, ModernBERT, Llama/Mistral/Qwen2/Qwen3, GPT-2 and
GPT-NeoX decoders):
configurations and ``PreTrainedModel`` classes.

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

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMultipleChoice,
    AutoModelForSequenceClassification,
)

from nasprune.pruned.configuration import (
    PrunedBertConfig,
    PrunedDistilBertConfig,
    PrunedElectraConfig,
    PrunedRobertaConfig,
)
from nasprune.pruned.configuration_deberta_v2 import PrunedDebertaV2Config
from nasprune.pruned.configuration_gpt2 import PrunedGPT2Config
from nasprune.pruned.configuration_gpt_neox import PrunedGPTNeoXConfig
from nasprune.pruned.configuration_llama import (
    PrunedLlamaConfig,
    PrunedMistralConfig,
    PrunedQwen2Config,
    PrunedQwen3Config,
)
from nasprune.pruned.configuration_modernbert import PrunedModernBertConfig
from nasprune.pruned.modeling_gpt2 import (
    PrunedGPT2ForCausalLM,
    PrunedGPT2ForSequenceClassification,
    PrunedGPT2Model,
)
from nasprune.pruned.modeling_gpt_neox import (
    PrunedGPTNeoXForCausalLM,
    PrunedGPTNeoXForSequenceClassification,
    PrunedGPTNeoXModel,
)
from nasprune.pruned.modeling_deberta_v2 import (
    PrunedDebertaV2ForMultipleChoice,
    PrunedDebertaV2ForSequenceClassification,
    PrunedDebertaV2Model,
)
from nasprune.pruned.modeling_llama import (
    PrunedLlamaForCausalLM,
    PrunedLlamaForSequenceClassification,
    PrunedLlamaModel,
    PrunedMistralForCausalLM,
    PrunedMistralForSequenceClassification,
    PrunedMistralModel,
    PrunedQwen2ForCausalLM,
    PrunedQwen2ForSequenceClassification,
    PrunedQwen2Model,
    PrunedQwen3ForCausalLM,
    PrunedQwen3ForSequenceClassification,
    PrunedQwen3Model,
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
    #: None for families without a multiple-choice head (decoders).
    multiple_choice: type | None = None
    #: The language-modelling class of decoder families (None for encoders).
    causal_lm: type | None = None

    def task_class(self, task_kind: str) -> type:
        """The model class of a task kind ("multiple_choice", "causal_lm", or any classification/regression)."""
        chosen = {"multiple_choice": self.multiple_choice, "causal_lm": self.causal_lm}.get(
            task_kind, self.sequence_classification
        )
        if chosen is None:
            raise ValueError(f"{self.config.model_type} has no pruned model class for {task_kind!r}")
        return chosen


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
# Llama-family decoders: a causal-LM class, no multiple-choice head.
PRUNED_FAMILIES.update(
    llama=PrunedFamily(PrunedLlamaConfig, PrunedLlamaModel, PrunedLlamaForSequenceClassification,
                       causal_lm=PrunedLlamaForCausalLM),
    mistral=PrunedFamily(PrunedMistralConfig, PrunedMistralModel, PrunedMistralForSequenceClassification,
                         causal_lm=PrunedMistralForCausalLM),
    qwen2=PrunedFamily(PrunedQwen2Config, PrunedQwen2Model, PrunedQwen2ForSequenceClassification,
                       causal_lm=PrunedQwen2ForCausalLM),
    qwen3=PrunedFamily(PrunedQwen3Config, PrunedQwen3Model, PrunedQwen3ForSequenceClassification,
                       causal_lm=PrunedQwen3ForCausalLM),
)
# XLM-RoBERTa is RoBERTa's architecture (its HF classes are RoBERTa's code under other names), so
# it exports to the pruned RoBERTa classes.
PRUNED_FAMILIES["xlm-roberta"] = PRUNED_FAMILIES["roberta"]
# GPT-2 and GPT-NeoX (Pythia) decoders: their layers are named as the encoders' pruned layers, so
# export/slicing.py cuts them out like the encoder families.
PRUNED_FAMILIES.update(
    gpt2=PrunedFamily(PrunedGPT2Config, PrunedGPT2Model, PrunedGPT2ForSequenceClassification,
                      causal_lm=PrunedGPT2ForCausalLM),
    gpt_neox=PrunedFamily(PrunedGPTNeoXConfig, PrunedGPTNeoXModel, PrunedGPTNeoXForSequenceClassification,
                          causal_lm=PrunedGPTNeoXForCausalLM),
)


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel*`` load pruned models by their ``model_type``. Idempotent."""
    for family in PRUNED_FAMILIES.values():
        AutoConfig.register(family.config.model_type, family.config, exist_ok=True)
        AutoModel.register(family.config, family.base_model, exist_ok=True)
        AutoModelForSequenceClassification.register(
            family.config, family.sequence_classification, exist_ok=True
        )
        if family.multiple_choice is not None:
            AutoModelForMultipleChoice.register(family.config, family.multiple_choice, exist_ok=True)
        if family.causal_lm is not None:
            AutoModelForCausalLM.register(family.config, family.causal_lm, exist_ok=True)


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
    "PrunedGPT2Config",
    "PrunedGPT2ForCausalLM",
    "PrunedGPT2ForSequenceClassification",
    "PrunedGPT2Model",
    "PrunedGPTNeoXConfig",
    "PrunedGPTNeoXForCausalLM",
    "PrunedGPTNeoXForSequenceClassification",
    "PrunedGPTNeoXModel",
    "PrunedLlamaConfig",
    "PrunedLlamaForCausalLM",
    "PrunedLlamaForSequenceClassification",
    "PrunedLlamaModel",
    "PrunedMistralConfig",
    "PrunedMistralForCausalLM",
    "PrunedMistralForSequenceClassification",
    "PrunedMistralModel",
    "PrunedQwen2Config",
    "PrunedQwen2ForCausalLM",
    "PrunedQwen2ForSequenceClassification",
    "PrunedQwen2Model",
    "PrunedQwen3Config",
    "PrunedQwen3ForCausalLM",
    "PrunedQwen3ForSequenceClassification",
    "PrunedQwen3Model",
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
