"""Physically pruned BERT, RoBERTa, DistilBERT and ELECTRA models: every encoder layer keeps its
own heads and units.

The embeddings, pooler and task heads are HuggingFace's own modules, so their weights and
behaviour are exactly those of the source model. The encoder layers are written here because
their widths differ from layer to layer:

- the attention block of a layer with ``h`` heads projects to ``h * head_dim`` features, and the
  output projection reads those features back;
- the feed-forward block of a layer with ``u`` units has an ``u``-wide intermediate activation;
- a layer with 0 heads has no attention block and one with 0 units no feed-forward block: the
  residual stream passes through unchanged (no bias, no LayerNorm), as in the super-network.

This file is copied next to exported weights so that ``from_pretrained(..., trust_remote_code=True)``
works where nasprune is not installed. It must therefore import nothing but the standard library,
``torch``, ``transformers`` and its sibling ``configuration`` module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MultipleChoiceModelOutput,
    SequenceClassifierOutput,
)
from transformers.models.bert.modeling_bert import BertEmbeddings, BertPooler
from transformers.models.distilbert.modeling_distilbert import Embeddings as DistilBertEmbeddings
from transformers.models.electra.modeling_electra import (
    ElectraClassificationHead,
    ElectraEmbeddings,
    ElectraSequenceSummary,
)
from transformers.models.roberta.modeling_roberta import (
    RobertaClassificationHead,
    RobertaEmbeddings,
    RobertaPooler,
)

from .configuration import PrunedBertConfig, PrunedDistilBertConfig, PrunedElectraConfig, PrunedRobertaConfig


# ------------------------------------------------------------------------------------------------
# Encoder layers
# ------------------------------------------------------------------------------------------------
class PrunedSelfAttention(nn.Module):
    """Multi-head self-attention over ``num_heads`` heads, then residual and LayerNorm (post-LN)."""

    def __init__(self, config, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        width = num_heads * self.head_dim
        self.query = nn.Linear(config.hidden_size, width)
        self.key = nn.Linear(config.hidden_size, width)
        self.value = nn.Linear(config.hidden_size, width)
        self.attention_dropout = config.attention_probs_dropout_prob
        self.output = nn.Linear(width, config.hidden_size)
        # DistilBERT's config sets this to 0: it adds the attention output without dropout.
        self.dropout = nn.Dropout(getattr(config, "attention_output_dropout_prob", config.hidden_dropout_prob))
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        split = (batch, length, self.num_heads, self.head_dim)
        query = self.query(hidden_states).view(split).transpose(1, 2)
        key = self.key(hidden_states).view(split).transpose(1, 2)
        value = self.value(hidden_states).view(split).transpose(1, 2)
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
            # The scale follows the unpruned head size, which pruning whole heads does not change.
            scale=self.head_dim**-0.5,
        )
        context = context.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.LayerNorm(hidden_states + self.dropout(self.output(context)))


class PrunedFeedForward(nn.Module):
    """The position-wise feed-forward block with ``num_units`` units, then residual and LayerNorm."""

    def __init__(self, config, num_units: int):
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, num_units)
        self.activation = ACT2FN[config.hidden_act] if isinstance(config.hidden_act, str) else config.hidden_act
        self.output = nn.Linear(num_units, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        inner = self.activation(self.intermediate(hidden_states))
        return self.LayerNorm(hidden_states + self.dropout(self.output(inner)))


class PrunedLayer(nn.Module):
    """One encoder layer; either block is ``None`` when the layer keeps no heads / no units."""

    def __init__(self, config, num_heads: int, num_units: int):
        super().__init__()
        self.attention = PrunedSelfAttention(config, num_heads) if num_heads > 0 else None
        self.feed_forward = PrunedFeedForward(config, num_units) if num_units > 0 else None

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.attention is not None:
            hidden_states = self.attention(hidden_states, attention_mask)
        if self.feed_forward is not None:
            hidden_states = self.feed_forward(hidden_states)
        return hidden_states


class PrunedEncoder(nn.Module):
    """The stack of encoder layers, each as wide as ``config.heads_per_layer`` / ``units_per_layer`` say."""

    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(
            PrunedLayer(config, heads, units)
            for heads, units in zip(config.heads_per_layer, config.units_per_layer)
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        all_hidden = (hidden_states,) if output_hidden_states else None
        for layer in self.layer:
            hidden_states = layer(hidden_states, attention_mask)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden_states,)
        return hidden_states, all_hidden


def _additive_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """``[N, T]`` 1/0 padding mask -> ``[N, 1, 1, T]`` additive mask for scaled dot-product attention."""
    if attention_mask is None:
        return None
    keep = attention_mask[:, None, None, :].to(dtype)
    # The dtype's most negative finite value rather than -inf: a fully padded row then gives a
    # uniform softmax instead of NaNs, as in HuggingFace's own BERT.
    return (1.0 - keep) * torch.finfo(dtype).min


def _flatten_choices(tensor: torch.Tensor | None, keep_last: int = 1) -> torch.Tensor | None:
    """``[B, C, ...]`` -> ``[B * C, ...]`` keeping the trailing ``keep_last`` dimensions."""
    if tensor is None:
        return None
    return tensor.reshape(-1, *tensor.shape[-keep_last:])


def _sequence_classification_loss(config, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss HuggingFace's sequence-classification heads compute, chosen by ``problem_type``."""
    num_labels = config.num_labels
    problem_type = config.problem_type
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        if num_labels == 1:
            return MSELoss()(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return MSELoss()(logits, labels.to(logits.dtype))
    if problem_type == "single_label_classification":
        return CrossEntropyLoss()(logits.view(-1, num_labels), labels.view(-1))
    return BCEWithLogitsLoss()(logits, labels.to(logits.dtype))


# ------------------------------------------------------------------------------------------------
# Base classes
# ------------------------------------------------------------------------------------------------
class _PrunedPreTrainedModel(PreTrainedModel):
    """Weight init and capabilities shared by the pruned BERT and RoBERTa models."""

    supports_gradient_checkpointing = False
    # The layers call scaled_dot_product_attention themselves.
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, (BertEmbeddings, RobertaEmbeddings, DistilBertEmbeddings, ElectraEmbeddings)):
            # Non-persistent buffers are not in the checkpoint; rebuild them like HF's BERT does.
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
            if hasattr(module, "token_type_ids"):  # DistilBERT has no token types
                init.zeros_(module.token_type_ids)


class _PrunedBaseModelMixin:
    """Embeddings -> pruned encoder -> optional pooler; the forward of both families' base models."""

    def _build(self, config, embeddings_class: type, pooler_class: type, add_pooling_layer: bool) -> None:
        self.embeddings = embeddings_class(config)
        self.encoder = PrunedEncoder(config)
        self.pooler = pooler_class(config) if add_pooling_layer else None

    def _embed(
        self,
        input_ids: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
    ) -> torch.Tensor:
        """What the first encoder layer reads; families with other embeddings override this."""
        return self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
        )

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPooling | tuple:
        """Run ``[N, T]`` token ids (or ``[N, T, d]`` input embeddings) through the encoder."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        hidden = self._embed(input_ids, token_type_ids, position_ids, inputs_embeds)
        sequence_output, all_hidden = self.encoder(
            hidden, _additive_mask(attention_mask, hidden.dtype), bool(output_hidden_states)
        )
        pooled = self.pooler(sequence_output) if self.pooler is not None else None
        output = BaseModelOutputWithPooling(
            last_hidden_state=sequence_output, pooler_output=pooled, hidden_states=all_hidden
        )
        return output if return_dict else output.to_tuple()


class _SequenceClassificationMixin:
    """``[B, T]`` inputs -> the family's head (``_logits``) -> logits, and the HF loss for ``labels``."""

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self._logits(outputs)
        loss = _sequence_classification_loss(self.config, logits, labels) if labels is not None else None
        output = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


class _MultipleChoiceMixin:
    """``[B, C, T]`` inputs -> the family's head (``_choice_logits``; default: the pooled first
    token) -> one logit per choice."""

    def _choice_logits(self, outputs: BaseModelOutputWithPooling) -> torch.Tensor:
        return self.classifier(self.dropout(outputs.pooler_output))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> MultipleChoiceModelOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        num_choices = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        outputs = self.base_model(
            input_ids=_flatten_choices(input_ids),
            attention_mask=_flatten_choices(attention_mask),
            token_type_ids=_flatten_choices(token_type_ids),
            position_ids=_flatten_choices(position_ids),
            inputs_embeds=_flatten_choices(inputs_embeds, keep_last=2),
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self._choice_logits(outputs).view(-1, num_choices)
        loss = CrossEntropyLoss()(logits, labels) if labels is not None else None
        output = MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


def _classifier_dropout(config) -> float:
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


# ------------------------------------------------------------------------------------------------
# BERT
# ------------------------------------------------------------------------------------------------
class PrunedBertPreTrainedModel(_PrunedPreTrainedModel):
    config_class = PrunedBertConfig
    base_model_prefix = "bert"


class PrunedBertModel(_PrunedBaseModelMixin, PrunedBertPreTrainedModel):
    """A pruned BERT encoder: BERT embeddings, pruned layers and BERT's pooler."""

    _auto_class = "AutoModel"

    def __init__(self, config: PrunedBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self._build(config, BertEmbeddings, BertPooler, add_pooling_layer)
        self.post_init()


class PrunedBertForSequenceClassification(_SequenceClassificationMixin, PrunedBertPreTrainedModel):
    """Pruned BERT with BERT's classification / regression head (pooler -> dropout -> linear)."""

    _auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: PrunedBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = PrunedBertModel(config)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _logits(self, outputs: BaseModelOutputWithPooling) -> torch.Tensor:
        return self.classifier(self.dropout(outputs.pooler_output))


class PrunedBertForMultipleChoice(_MultipleChoiceMixin, PrunedBertPreTrainedModel):
    """Pruned BERT with BERT's multiple-choice head (one logit per choice)."""

    _auto_class = "AutoModelForMultipleChoice"

    def __init__(self, config: PrunedBertConfig):
        super().__init__(config)
        self.bert = PrunedBertModel(config)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()


# ------------------------------------------------------------------------------------------------
# RoBERTa
# ------------------------------------------------------------------------------------------------
class PrunedRobertaPreTrainedModel(_PrunedPreTrainedModel):
    config_class = PrunedRobertaConfig
    base_model_prefix = "roberta"


class PrunedRobertaModel(_PrunedBaseModelMixin, PrunedRobertaPreTrainedModel):
    """A pruned RoBERTa encoder: RoBERTa embeddings (padding-aware positions), pruned layers, pooler."""

    _auto_class = "AutoModel"

    def __init__(self, config: PrunedRobertaConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self._build(config, RobertaEmbeddings, RobertaPooler, add_pooling_layer)
        self.post_init()


class PrunedRobertaForSequenceClassification(_SequenceClassificationMixin, PrunedRobertaPreTrainedModel):
    """Pruned RoBERTa with RoBERTa's classification head, which reads the ``<s>`` token itself."""

    _auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: PrunedRobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        # Like HF's RobertaForSequenceClassification: the head has its own dense layer, no pooler.
        self.roberta = PrunedRobertaModel(config, add_pooling_layer=False)
        self.classifier = RobertaClassificationHead(config)
        self.post_init()

    def _logits(self, outputs: BaseModelOutputWithPooling) -> torch.Tensor:
        return self.classifier(outputs.last_hidden_state)


class PrunedRobertaForMultipleChoice(_MultipleChoiceMixin, PrunedRobertaPreTrainedModel):
    """Pruned RoBERTa with RoBERTa's multiple-choice head (pooler -> dropout -> linear)."""

    _auto_class = "AutoModelForMultipleChoice"

    def __init__(self, config: PrunedRobertaConfig):
        super().__init__(config)
        self.roberta = PrunedRobertaModel(config)
        # HF's RobertaForMultipleChoice ignores classifier_dropout here; so do we, to match it.
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()


# ------------------------------------------------------------------------------------------------
# DistilBERT
# ------------------------------------------------------------------------------------------------
class PrunedDistilBertPreTrainedModel(_PrunedPreTrainedModel):
    config_class = PrunedDistilBertConfig
    base_model_prefix = "distilbert"


class PrunedDistilBertModel(_PrunedBaseModelMixin, PrunedDistilBertPreTrainedModel):
    """A pruned DistilBERT encoder: DistilBERT's embeddings (no token types) and pruned layers."""

    _auto_class = "AutoModel"

    def __init__(self, config: PrunedDistilBertConfig):
        super().__init__(config)
        self._build(config, DistilBertEmbeddings, None, add_pooling_layer=False)
        self.post_init()

    def _embed(
        self,
        input_ids: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
    ) -> torch.Tensor:
        if token_type_ids is not None:
            raise ValueError("DistilBERT has no token types: do not pass token_type_ids")
        return self.embeddings(input_ids, inputs_embeds=inputs_embeds, position_ids=position_ids)


class _DistilBertHeadMixin:
    """DistilBERT's head for both tasks: first token -> pre_classifier -> ReLU -> dropout -> classifier."""

    def _logits(self, outputs: BaseModelOutputWithPooling) -> torch.Tensor:
        first = outputs.last_hidden_state[:, 0]
        return self.classifier(self.dropout(torch.relu(self.pre_classifier(first))))

    _choice_logits = _logits


class PrunedDistilBertForSequenceClassification(
    _DistilBertHeadMixin, _SequenceClassificationMixin, PrunedDistilBertPreTrainedModel
):
    """Pruned DistilBERT with DistilBERT's classification / regression head."""

    _auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: PrunedDistilBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.distilbert = PrunedDistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.post_init()


class PrunedDistilBertForMultipleChoice(_DistilBertHeadMixin, _MultipleChoiceMixin, PrunedDistilBertPreTrainedModel):
    """Pruned DistilBERT with DistilBERT's multiple-choice head (one logit per choice)."""

    _auto_class = "AutoModelForMultipleChoice"

    def __init__(self, config: PrunedDistilBertConfig):
        super().__init__(config)
        self.distilbert = PrunedDistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, 1)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.post_init()


# ------------------------------------------------------------------------------------------------
# ELECTRA
# ------------------------------------------------------------------------------------------------
class PrunedElectraPreTrainedModel(_PrunedPreTrainedModel):
    config_class = PrunedElectraConfig
    base_model_prefix = "electra"


class PrunedElectraModel(_PrunedBaseModelMixin, PrunedElectraPreTrainedModel):
    """A pruned ELECTRA encoder: ELECTRA's embeddings, their projection to the hidden size when the
    embedding size differs, and pruned layers (no pooler)."""

    _auto_class = "AutoModel"

    def __init__(self, config: PrunedElectraConfig):
        super().__init__(config)
        self._build(config, ElectraEmbeddings, None, add_pooling_layer=False)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.post_init()

    def _embed(
        self,
        input_ids: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
    ) -> torch.Tensor:
        hidden = super()._embed(input_ids, token_type_ids, position_ids, inputs_embeds)
        return self.embeddings_project(hidden) if hasattr(self, "embeddings_project") else hidden


class PrunedElectraForSequenceClassification(_SequenceClassificationMixin, PrunedElectraPreTrainedModel):
    """Pruned ELECTRA with ELECTRA's classification head, which reads the first token itself."""

    _auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: PrunedElectraConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.electra = PrunedElectraModel(config)
        self.classifier = ElectraClassificationHead(config)
        self.post_init()

    def _logits(self, outputs: BaseModelOutputWithPooling) -> torch.Tensor:
        return self.classifier(outputs.last_hidden_state)


class PrunedElectraForMultipleChoice(_MultipleChoiceMixin, PrunedElectraPreTrainedModel):
    """Pruned ELECTRA with ELECTRA's multiple-choice head (sequence summary -> linear)."""

    _auto_class = "AutoModelForMultipleChoice"

    def __init__(self, config: PrunedElectraConfig):
        super().__init__(config)
        self.electra = PrunedElectraModel(config)
        self.sequence_summary = ElectraSequenceSummary(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def _choice_logits(self, outputs: BaseModelOutputWithPooling) -> torch.Tensor:
        return self.classifier(self.sequence_summary(outputs.last_hidden_state))


__all__ = [
    "PrunedDistilBertForMultipleChoice",
    "PrunedDistilBertForSequenceClassification",
    "PrunedDistilBertModel",
    "PrunedDistilBertPreTrainedModel",
    "PrunedElectraForMultipleChoice",
    "PrunedElectraForSequenceClassification",
    "PrunedElectraModel",
    "PrunedElectraPreTrainedModel",
    "PrunedBertForMultipleChoice",
    "PrunedBertForSequenceClassification",
    "PrunedBertModel",
    "PrunedBertPreTrainedModel",
    "PrunedRobertaForMultipleChoice",
    "PrunedRobertaForSequenceClassification",
    "PrunedRobertaModel",
    "PrunedRobertaPreTrainedModel",
]
