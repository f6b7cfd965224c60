"""Physically pruned ModernBERT models: every layer keeps its own heads and gated FFN units.

The embeddings, rotary embedding, final LayerNorm and prediction head are HuggingFace's own
modules, so their weights and behaviour are exactly those of the source model. The layers are
written here because their widths differ from layer to layer. A layer is pre-norm, as in
ModernBERT: ``x + attention(norm(x))`` then ``x + ffn(norm(x))``, where

- attention with ``h`` heads projects to ``h * head_dim`` queries, keys and values (separate
  projections rather than ModernBERT's fused ``Wqkv``: the same weights, split), rotates queries
  and keys (rotary embeddings of the layer's attention type) and, in sliding-window layers,
  attends only to keys within ``config.sliding_window`` positions;
- the FFN with ``u`` units computes ``Wo(act(intermediate(x)) * up(x))`` (ModernBERT's ``Wi``
  split into its two halves);
- a layer with 0 heads has no attention block and one with 0 units no FFN block (no norm either).

This file is copied next to exported weights so that ``from_pretrained(..., trust_remote_code=True)``
works where nasprune is not installed. It must therefore import nothing but the standard library,
``torch``, ``transformers`` and its sibling ``configuration_modernbert`` module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import CrossEntropyLoss
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.loss.loss_utils import ForSequenceClassificationLoss
from transformers.modeling_outputs import BaseModelOutput, MultipleChoiceModelOutput, SequenceClassifierOutput
from transformers.models.modernbert.modeling_modernbert import (
    ModernBertEmbeddings,
    ModernBertPredictionHead,
    ModernBertRotaryEmbedding,
)

from .configuration_modernbert import PrunedModernBertConfig


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of ``[N, h, T, dh]`` (in float32, as HuggingFace's ModernBERT)."""
    first, second = x.float().chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (x.float() * cos + rotated * sin).to(x.dtype)


class PrunedModernBertAttention(nn.Module):
    """Self-attention over ``num_heads`` heads with rotary embeddings; pre-norm and residual."""

    def __init__(self, config: PrunedModernBertConfig, num_heads: int, has_norm: bool):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        width = num_heads * self.head_dim
        self.LayerNorm = (
            nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias) if has_norm else nn.Identity()
        )
        self.query = nn.Linear(config.hidden_size, width, bias=config.attention_bias)
        self.key = nn.Linear(config.hidden_size, width, bias=config.attention_bias)
        self.value = nn.Linear(config.hidden_size, width, bias=config.attention_bias)
        self.output = nn.Linear(width, config.hidden_size, bias=config.attention_bias)
        self.attention_dropout = config.attention_dropout
        self.dropout = nn.Dropout(config.attention_dropout)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        normed = self.LayerNorm(hidden_states)
        split = (batch, length, self.num_heads, self.head_dim)
        query = _rotate(self.query(normed).view(split).transpose(1, 2), cos, sin)
        key = _rotate(self.key(normed).view(split).transpose(1, 2), cos, sin)
        value = self.value(normed).view(split).transpose(1, 2)
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
        return hidden_states + self.dropout(self.output(context))


class PrunedModernBertFeedForward(nn.Module):
    """The gated FFN with ``num_units`` gate/up pairs; pre-norm and residual."""

    def __init__(self, config: PrunedModernBertConfig, num_units: int):
        super().__init__()
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.intermediate = nn.Linear(config.hidden_size, num_units, bias=config.mlp_bias)
        self.up = nn.Linear(config.hidden_size, num_units, bias=config.mlp_bias)
        self.activation = ACT2FN[config.hidden_activation]
        self.dropout = nn.Dropout(config.mlp_dropout)
        self.output = nn.Linear(num_units, config.hidden_size, bias=config.mlp_bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        normed = self.LayerNorm(hidden_states)
        inner = self.activation(self.intermediate(normed)) * self.up(normed)
        return hidden_states + self.output(self.dropout(inner))


class PrunedModernBertLayer(nn.Module):
    """One layer; either block is ``None`` when the layer keeps no heads / no units."""

    def __init__(self, config: PrunedModernBertConfig, index: int):
        super().__init__()
        heads, units = config.heads_per_layer[index], config.units_per_layer[index]
        self.attention_type = config.layer_types[index]
        has_norm = config.source_layers[index] != 0
        self.attention = PrunedModernBertAttention(config, heads, has_norm) if heads > 0 else None
        self.feed_forward = PrunedModernBertFeedForward(config, units) if units > 0 else None

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        if self.attention is not None:
            hidden_states = self.attention(hidden_states, attention_mask, cos, sin)
        if self.feed_forward is not None:
            hidden_states = self.feed_forward(hidden_states)
        return hidden_states


class PrunedModernBertEncoder(nn.Module):
    def __init__(self, config: PrunedModernBertConfig):
        super().__init__()
        self.layer = nn.ModuleList(PrunedModernBertLayer(config, i) for i in range(config.num_hidden_layers))


def _attention_masks(
    attention_mask: torch.Tensor | None, length: int, window: int, dtype: torch.dtype, device: torch.device
) -> dict[str, torch.Tensor | None]:
    """Additive masks for ``full_attention`` (padding) and ``sliding_attention`` (padding and keys
    more than ``window`` positions away)."""
    lowest = torch.finfo(dtype).min
    padding = None
    if attention_mask is not None:
        padding = (1.0 - attention_mask[:, None, None, :].to(dtype)) * lowest
    positions = torch.arange(length, device=device)
    far = (positions[:, None] - positions[None, :]).abs() > window
    band = torch.zeros((1, 1, length, length), dtype=dtype, device=device).masked_fill(far, lowest)
    # A finite minimum, never -inf: a query with no key left gets a uniform softmax, not NaNs.
    sliding = band if padding is None else (padding + band).clamp_min(lowest)
    return {"full_attention": padding, "sliding_attention": sliding}


class PrunedModernBertPreTrainedModel(PreTrainedModel):
    config_class = PrunedModernBertConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, ModernBertRotaryEmbedding):
            # Non-persistent buffers are not in the checkpoint: rebuild them from the config.
            for layer_type in module.layer_types:
                inv_freq, _ = module.compute_default_rope_parameters(module.config, layer_type=layer_type)
                getattr(module, f"{layer_type}_inv_freq").copy_(inv_freq)
                getattr(module, f"{layer_type}_original_inv_freq").copy_(inv_freq)


class PrunedModernBertModel(PrunedModernBertPreTrainedModel):
    """A pruned ModernBERT encoder: ModernBERT embeddings, pruned layers, the final LayerNorm."""

    _auto_class = "AutoModel"

    def __init__(self, config: PrunedModernBertConfig):
        super().__init__(config)
        if any(params["rope_type"] != "default" for params in config.rope_parameters.values() if params):
            raise ValueError("pruned ModernBERT models support the default rotary embedding only")
        self.embeddings = ModernBertEmbeddings(config)
        self.encoder = PrunedModernBertEncoder(config)
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.rotary_emb = ModernBertRotaryEmbedding(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.tok_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings.tok_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput | tuple:
        """Run ``[N, T]`` token ids (or ``[N, T, d]`` input embeddings); ``token_type_ids`` is
        accepted and ignored (ModernBERT has no token types)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        hidden = self.embeddings(input_ids=input_ids, inputs_embeds=inputs_embeds)
        length = hidden.shape[1]
        masks = _attention_masks(attention_mask, length, self.config.sliding_window, hidden.dtype, hidden.device)
        positions = torch.arange(length, device=hidden.device).unsqueeze(0)
        rotary = {}
        for layer_type in set(self.config.layer_types):
            cos, sin = self.rotary_emb(hidden, positions, layer_type)
            rotary[layer_type] = (cos.unsqueeze(1), sin.unsqueeze(1))
        all_hidden = (hidden,) if output_hidden_states else None
        for layer in self.encoder.layer:
            hidden = layer(hidden, masks[layer.attention_type], *rotary[layer.attention_type])
            if output_hidden_states:
                all_hidden = all_hidden + (hidden,)
        output = BaseModelOutput(last_hidden_state=self.final_norm(hidden), hidden_states=all_hidden)
        return output if return_dict else output.to_tuple()


class _PooledHeadMixin:
    """ModernBERT's head: pool (first token or mean over tokens) -> prediction head -> dropout -> linear."""

    def _pooled_logits(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor | None, first_token: bool
    ) -> torch.Tensor:
        if self.config.classifier_pooling == "mean":
            if attention_mask is None:
                pooled = hidden.mean(dim=1)
            else:
                weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
        elif first_token and attention_mask is not None:
            # As HF's multiple-choice head: the first non-padding token.
            index = attention_mask.long().argmax(dim=-1)
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
        else:
            pooled = hidden[:, 0]
        return self.classifier(self.drop(self.head(pooled)))


class PrunedModernBertForSequenceClassification(_PooledHeadMixin, PrunedModernBertPreTrainedModel):
    """Pruned ModernBERT with ModernBERT's classification / regression head."""

    _auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: PrunedModernBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = PrunedModernBertModel(config)
        self.head = ModernBertPredictionHead(config)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self._pooled_logits(outputs.last_hidden_state, attention_mask, first_token=False)
        loss = ForSequenceClassificationLoss(labels, logits, self.config) if labels is not None else None
        output = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


class PrunedModernBertForMultipleChoice(_PooledHeadMixin, PrunedModernBertPreTrainedModel):
    """Pruned ModernBERT with ModernBERT's multiple-choice head (one logit per choice)."""

    _auto_class = "AutoModelForMultipleChoice"

    def __init__(self, config: PrunedModernBertConfig):
        super().__init__(config)
        self.model = PrunedModernBertModel(config)
        self.head = ModernBertPredictionHead(config)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> MultipleChoiceModelOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        num_choices = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        flat_mask = None if attention_mask is None else attention_mask.reshape(-1, attention_mask.shape[-1])
        outputs = self.model(
            input_ids=None if input_ids is None else input_ids.reshape(-1, input_ids.shape[-1]),
            attention_mask=flat_mask,
            inputs_embeds=None if inputs_embeds is None else inputs_embeds.reshape(-1, *inputs_embeds.shape[-2:]),
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self._pooled_logits(outputs.last_hidden_state, flat_mask, first_token=True).view(-1, num_choices)
        loss = CrossEntropyLoss()(logits, labels) if labels is not None else None
        output = MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


__all__ = [
    "PrunedModernBertForMultipleChoice",
    "PrunedModernBertForSequenceClassification",
    "PrunedModernBertModel",
    "PrunedModernBertPreTrainedModel",
]
