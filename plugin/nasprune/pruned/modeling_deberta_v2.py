"""Physically pruned DeBERTa-v2 / v3 models: every layer keeps its own heads and FFN units.

The embeddings, relative-position embeddings (and their LayerNorm), context pooler and classifier
are HuggingFace's modules or parameters under HuggingFace's names, so their weights and behaviour
are exactly those of the source model. The layers are written here because their widths differ
from layer to layer. A layer is post-norm, as in DeBERTa; its attention with ``h`` heads adds to
each head's content scores the content-to-position (``c2p``) and position-to-content (``p2c``)
terms, computed from that head's rows of the key / query projections (``share_att_key``) or of
the separate position projections (``head_projections``: key first, then query). A layer with 0
heads has no attention block and one with 0 units no FFN block (no LayerNorm either).

This file is copied next to exported weights so that ``from_pretrained(..., trust_remote_code=True)``
works where nasprune is not installed. It must therefore import nothing but the standard library,
``torch``, ``transformers`` and its sibling ``configuration_deberta_v2`` module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import CrossEntropyLoss
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.loss.loss_utils import ForSequenceClassificationLoss
from transformers.modeling_outputs import BaseModelOutput, MultipleChoiceModelOutput, SequenceClassifierOutput
from transformers.models.deberta_v2.modeling_deberta_v2 import (
    ContextPooler,
    DebertaV2Embeddings,
    build_relative_position,
)

from .configuration_deberta_v2 import PrunedDebertaV2Config


def _position_terms(config) -> tuple[str, ...]:
    if not getattr(config, "relative_attention", False):
        return ()
    kinds = config.pos_att_type or []
    return tuple(term for term in ("c2p", "p2c") if term in kinds)


def _attention_span(config) -> int:
    """Relative distances each side that get their own embedding (DeBERTa's ``pos_ebd_size``)."""
    buckets = getattr(config, "position_buckets", -1)
    if buckets > 0:
        return buckets
    return config.max_relative_positions if config.max_relative_positions >= 1 else config.max_position_embeddings


class PrunedDebertaV2Attention(nn.Module):
    """Disentangled self-attention over ``num_heads`` heads, then residual and LayerNorm."""

    def __init__(self, config: PrunedDebertaV2Config, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        width = num_heads * self.head_dim
        self.query = nn.Linear(config.hidden_size, width)
        self.key = nn.Linear(config.hidden_size, width)
        self.value = nn.Linear(config.hidden_size, width)
        self.terms = _position_terms(config)
        self.share_att_key = getattr(config, "share_att_key", False)
        separate = () if self.share_att_key else self.terms
        # Separate position projections (DeBERTa-v2 without share_att_key): key (c2p), then query (p2c).
        self.head_projections = nn.ModuleList(nn.Linear(config.hidden_size, width) for _ in separate)
        self.span = _attention_span(config)
        self.position_buckets = getattr(config, "position_buckets", -1)
        furthest = config.max_relative_positions
        self.max_relative_positions = furthest if furthest >= 1 else config.max_position_embeddings
        self.attention_dropout = config.attention_probs_dropout_prob
        self.pos_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.output = nn.Linear(width, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., T, h * dh]`` -> ``[..., h, T, dh]``."""
        return x.view(*x.shape[:-1], self.num_heads, self.head_dim).transpose(-3, -2)

    def _position_projection(self, term: str) -> nn.Linear:
        if self.share_att_key:
            return self.key if term == "c2p" else self.query
        return self.head_projections[self.terms.index(term)]

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, rel_embeddings: torch.Tensor | None
    ) -> torch.Tensor:
        query = self._heads(self.query(hidden_states))
        key = self._heads(self.key(hidden_states))
        value = self._heads(self.value(hidden_states))
        scale = 1.0 / math.sqrt(self.head_dim * (1 + len(self.terms)))
        mask = attention_mask
        if self.terms:
            length = query.shape[-2]
            relative = self.pos_dropout(rel_embeddings)[: 2 * self.span]
            distance = build_relative_position(
                query, key, bucket_size=self.position_buckets, max_position=self.max_relative_positions
            )[0]
            expand = (*query.shape[:2], length, length)
            bias = torch.zeros((), dtype=query.dtype, device=query.device)
            if "c2p" in self.terms:
                pos_key = self._heads(self._position_projection("c2p")(relative))  # [h, 2 span, dh]
                scores = torch.matmul(query, pos_key.transpose(-1, -2))
                index = torch.clamp(distance + self.span, 0, 2 * self.span - 1)
                bias = bias + torch.gather(scores, -1, index.expand(expand))
            if "p2c" in self.terms:
                pos_query = self._heads(self._position_projection("p2c")(relative))
                scores = torch.matmul(key, pos_query.transpose(-1, -2))
                index = torch.clamp(-distance + self.span, 0, 2 * self.span - 1)
                bias = bias + torch.gather(scores, -1, index.expand(expand)).transpose(-1, -2)
            mask = bias * scale if mask is None else bias * scale + mask
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
            scale=scale,
        )
        batch, _, length, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.LayerNorm(hidden_states + self.dropout(self.output(context)))


class PrunedDebertaV2FeedForward(nn.Module):
    """The position-wise feed-forward block with ``num_units`` units, then residual and LayerNorm."""

    def __init__(self, config: PrunedDebertaV2Config, num_units: int):
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, num_units)
        self.activation = ACT2FN[config.hidden_act] if isinstance(config.hidden_act, str) else config.hidden_act
        self.output = nn.Linear(num_units, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        inner = self.activation(self.intermediate(hidden_states))
        return self.LayerNorm(hidden_states + self.dropout(self.output(inner)))


class PrunedDebertaV2Layer(nn.Module):
    """One layer; either block is ``None`` when the layer keeps no heads / no units."""

    def __init__(self, config: PrunedDebertaV2Config, num_heads: int, num_units: int):
        super().__init__()
        self.attention = PrunedDebertaV2Attention(config, num_heads) if num_heads > 0 else None
        self.feed_forward = PrunedDebertaV2FeedForward(config, num_units) if num_units > 0 else None

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, rel_embeddings: torch.Tensor | None
    ) -> torch.Tensor:
        if self.attention is not None:
            hidden_states = self.attention(hidden_states, attention_mask, rel_embeddings)
        if self.feed_forward is not None:
            hidden_states = self.feed_forward(hidden_states)
        return hidden_states


class PrunedDebertaV2Encoder(nn.Module):
    """The pruned layers, and DeBERTa's relative-position embeddings (with their LayerNorm in v3)."""

    def __init__(self, config: PrunedDebertaV2Config):
        super().__init__()
        self.layer = nn.ModuleList(
            PrunedDebertaV2Layer(config, heads, units)
            for heads, units in zip(config.heads_per_layer, config.units_per_layer)
        )
        self.relative_attention = getattr(config, "relative_attention", False)
        if self.relative_attention:
            self.rel_embeddings = nn.Embedding(2 * _attention_span(config), config.hidden_size)
        norms = [x.strip() for x in getattr(config, "norm_rel_ebd", "none").lower().split("|")]
        self.norm_rel_ebd = "layer_norm" in norms
        if self.norm_rel_ebd:
            self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def relative_embeddings(self) -> torch.Tensor | None:
        if not self.relative_attention:
            return None
        weight = self.rel_embeddings.weight
        return self.LayerNorm(weight) if self.norm_rel_ebd else weight


class PrunedDebertaV2PreTrainedModel(PreTrainedModel):
    config_class = PrunedDebertaV2Config
    base_model_prefix = "deberta"
    supports_gradient_checkpointing = False
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, DebertaV2Embeddings):
            # A non-persistent buffer, not in the checkpoint: rebuild it as HF's DeBERTa does.
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))


class PrunedDebertaV2Model(PrunedDebertaV2PreTrainedModel):
    """A pruned DeBERTa-v2 encoder: DeBERTa embeddings, pruned layers."""

    _auto_class = "AutoModel"

    def __init__(self, config: PrunedDebertaV2Config):
        super().__init__(config)
        self.embeddings = DebertaV2Embeddings(config)
        self.encoder = PrunedDebertaV2Encoder(config)
        self.post_init()

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
    ) -> BaseModelOutput | tuple:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        hidden = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            mask=attention_mask,
            inputs_embeds=inputs_embeds,
        )
        additive = None
        if attention_mask is not None:
            keep = attention_mask[:, None, None, :].to(hidden.dtype)
            additive = (1.0 - keep) * torch.finfo(hidden.dtype).min
        rel_embeddings = self.encoder.relative_embeddings()
        all_hidden = (hidden,) if output_hidden_states else None
        for layer in self.encoder.layer:
            hidden = layer(hidden, additive, rel_embeddings)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden,)
        output = BaseModelOutput(last_hidden_state=hidden, hidden_states=all_hidden)
        return output if return_dict else output.to_tuple()


def _cls_dropout(config) -> float:
    dropout = getattr(config, "cls_dropout", None)
    return config.hidden_dropout_prob if dropout is None else dropout


class PrunedDebertaV2ForSequenceClassification(PrunedDebertaV2PreTrainedModel):
    """Pruned DeBERTa with DeBERTa's classification / regression head (context pooler -> dropout -> linear)."""

    _auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: PrunedDebertaV2Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.deberta = PrunedDebertaV2Model(config)
        self.pooler = ContextPooler(config)
        self.classifier = nn.Linear(self.pooler.output_dim, config.num_labels)
        self.dropout = nn.Dropout(_cls_dropout(config))
        self.post_init()

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
        outputs = self.deberta(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(self.pooler(outputs.last_hidden_state)))
        loss = ForSequenceClassificationLoss(labels, logits, self.config) if labels is not None else None
        output = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


class PrunedDebertaV2ForMultipleChoice(PrunedDebertaV2PreTrainedModel):
    """Pruned DeBERTa with DeBERTa's multiple-choice head (one logit per choice)."""

    _auto_class = "AutoModelForMultipleChoice"

    def __init__(self, config: PrunedDebertaV2Config):
        super().__init__(config)
        self.deberta = PrunedDebertaV2Model(config)
        self.pooler = ContextPooler(config)
        self.classifier = nn.Linear(self.pooler.output_dim, 1)
        self.dropout = nn.Dropout(_cls_dropout(config))
        self.post_init()

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

        def flat(tensor: torch.Tensor | None, keep: int = 1) -> torch.Tensor | None:
            return None if tensor is None else tensor.reshape(-1, *tensor.shape[-keep:])

        outputs = self.deberta(
            input_ids=flat(input_ids),
            attention_mask=flat(attention_mask),
            token_type_ids=flat(token_type_ids),
            position_ids=flat(position_ids),
            inputs_embeds=flat(inputs_embeds, keep=2),
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(self.pooler(outputs.last_hidden_state))).view(-1, num_choices)
        loss = CrossEntropyLoss()(logits, labels) if labels is not None else None
        output = MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


__all__ = [
    "PrunedDebertaV2ForMultipleChoice",
    "PrunedDebertaV2ForSequenceClassification",
    "PrunedDebertaV2Model",
    "PrunedDebertaV2PreTrainedModel",
]
