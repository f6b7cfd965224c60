"""Physically pruned GPT-2 models: every layer keeps its own heads and FFN units.

The token and position embeddings, the final LayerNorm and the heads (the language-model head tied
to the token embeddings, or the last-token classifier ``score``) hold the source model's weights
under HuggingFace's names. The layers are written here because their widths differ from layer to
layer. A layer is pre-norm, as in GPT-2: ``x + attention(ln_1(x))`` then ``x + mlp(ln_2(x))``, where

- attention with ``h`` heads projects to ``h * head_dim`` queries, keys and values (``nn.Linear``
  layers holding GPT-2's ``c_attn`` Conv1D weights, split and transposed) and attends causally;
- the FFN with ``u`` units computes ``output(act(intermediate(x)))``;
- a layer with 0 heads has no attention block and one with 0 units no FFN block (no LayerNorm
  either).

Generation keeps a key/value cache for the layers that have attention only (numbered in order), so
``model.generate`` works as for GPT-2.

This file is copied next to exported weights so that ``from_pretrained(..., trust_remote_code=True)``
works where nasprune is not installed. It must therefore import nothing but the standard library,
``torch``, ``transformers`` and its sibling modules ``configuration_gpt2`` and ``modeling_decoder`` (what the
pruned decoders share), which ``save_pretrained`` copies with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPast

from .configuration_gpt2 import PrunedGPT2Config
from .modeling_decoder import (
    PrunedCausalLMMixin,
    PrunedSequenceClassifierMixin,
    cache_slots,
    causal_mask,
    model_output,
    start_decoding,
)


class PrunedGPT2Attention(nn.Module):
    """Causal self-attention over ``num_heads`` heads; pre-norm and residual."""

    def __init__(self, config: PrunedGPT2Config, num_heads: int, source_layer: int, cache_index: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = config.n_embd // config.n_head
        self.cache_index = cache_index
        width = num_heads * self.head_dim
        # The scale follows the unpruned head size, which pruning whole heads does not change.
        self.scale = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= float(source_layer + 1)
        self.LayerNorm = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.query = nn.Linear(config.n_embd, width)
        self.key = nn.Linear(config.n_embd, width)
        self.value = nn.Linear(config.n_embd, width)
        self.output = nn.Linear(width, config.n_embd)
        self.attention_dropout = config.attn_pdrop
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor, cache: Cache | None) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        normed = self.LayerNorm(hidden_states)
        split = (batch, length, self.num_heads, self.head_dim)
        query = self.query(normed).view(split).transpose(1, 2)
        key = self.key(normed).view(split).transpose(1, 2)
        value = self.value(normed).view(split).transpose(1, 2)
        if cache is not None:
            key, value = cache.update(key, value, self.cache_index)
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
            scale=self.scale,
        )
        context = context.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return hidden_states + self.dropout(self.output(context))


class PrunedGPT2FeedForward(nn.Module):
    """GPT-2's MLP with ``num_units`` units; pre-norm and residual."""

    def __init__(self, config: PrunedGPT2Config, num_units: int):
        super().__init__()
        self.LayerNorm = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.intermediate = nn.Linear(config.n_embd, num_units)
        self.activation = ACT2FN[config.activation_function]
        self.output = nn.Linear(num_units, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        inner = self.activation(self.intermediate(self.LayerNorm(hidden_states)))
        return hidden_states + self.dropout(self.output(inner))


class PrunedGPT2Layer(nn.Module):
    """One layer; either block is ``None`` when the layer keeps no heads / no units."""

    def __init__(self, config: PrunedGPT2Config, index: int, cache_index: int):
        super().__init__()
        heads, units = config.heads_per_layer[index], config.units_per_layer[index]
        source = config.source_layers[index]
        self.attention = PrunedGPT2Attention(config, heads, source, cache_index) if heads > 0 else None
        self.feed_forward = PrunedGPT2FeedForward(config, units) if units > 0 else None

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor, cache: Cache | None) -> torch.Tensor:
        if self.attention is not None:
            hidden_states = self.attention(hidden_states, mask, cache)
        if self.feed_forward is not None:
            hidden_states = self.feed_forward(hidden_states)
        return hidden_states


class PrunedGPT2Encoder(nn.Module):
    """The layers; the key/value cache numbers only those with attention."""

    def __init__(self, config: PrunedGPT2Config):
        super().__init__()
        slots = cache_slots(config.heads_per_layer)
        self.layer = nn.ModuleList(PrunedGPT2Layer(config, i, slots[i]) for i in range(config.n_layer))


class PrunedGPT2PreTrainedModel(PreTrainedModel):
    config_class = PrunedGPT2Config
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = False
    _supports_sdpa = True


class PrunedGPT2Model(PrunedGPT2PreTrainedModel):
    """A pruned GPT-2: GPT-2's embeddings, pruned layers, the final LayerNorm."""

    _auto_class = "AutoModel"

    def __init__(self, config: PrunedGPT2Config):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.encoder = PrunedGPT2Encoder(config)
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.wte

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.wte = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """Run ``[N, T]`` token ids (or ``[N, T, d]`` embeddings) after ``cache``'s tokens, if any."""
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        cache = cache if cache is not None else kwargs.get("past_key_values")
        inputs_embeds, cache, past, position_ids = start_decoding(
            self.wte, input_ids, inputs_embeds, position_ids, cache, use_cache
        )
        length = inputs_embeds.shape[1]
        hidden = inputs_embeds + self.wpe(position_ids)
        if token_type_ids is not None:
            hidden = hidden + self.wte(token_type_ids)
        hidden = self.drop(hidden)
        mask = causal_mask(attention_mask, past, length, past + length, hidden.dtype, hidden.device)
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask, cache)
        return model_output(BaseModelOutputWithPast, cache, last_hidden_state=self.ln_f(hidden))


class PrunedGPT2ForCausalLM(PrunedCausalLMMixin, PrunedGPT2PreTrainedModel, GenerationMixin):
    """Pruned GPT-2 with GPT-2's language-model head (tied to the token embeddings)."""

    _auto_class = "AutoModelForCausalLM"
    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}
    base_model_class = PrunedGPT2Model


class PrunedGPT2ForSequenceClassification(PrunedSequenceClassifierMixin, PrunedGPT2PreTrainedModel):
    """Pruned GPT-2 with GPT-2's classification / regression head on the last non-padding token."""

    _auto_class = "AutoModelForSequenceClassification"
    base_model_class = PrunedGPT2Model


__all__ = [
    "PrunedGPT2ForCausalLM",
    "PrunedGPT2ForSequenceClassification",
    "PrunedGPT2Model",
    "PrunedGPT2PreTrainedModel",
]
