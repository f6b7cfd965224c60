"""Physically pruned GPT-NeoX (Pythia) models: every layer keeps its own heads and FFN units.

The token embeddings, the rotary embedding, the final LayerNorm and the heads (``lm_head``, or the
last-token classifier ``score``) are HuggingFace's own modules with the source model's weights. The
layers are written here because their widths differ from layer to layer. A layer with ``h`` heads
projects to ``h * head_dim`` queries, keys and values (separate ``nn.Linear`` layers holding the
rows of GPT-NeoX's fused ``query_key_value``, which interleaves them head by head), rotates the
first ``rotary_ndims`` features of queries and keys (partial rotary embeddings) and attends
causally. Blocks are pre-norm; with ``use_parallel_residual`` (Pythia's default) both read the
layer's input, ``x + attention(ln_1(x)) + mlp(ln_2(x))``, otherwise they run one after the other.
A layer with 0 heads has no attention block and one with 0 units no FFN block (no LayerNorm either).

Generation keeps a key/value cache for the layers that have attention only (numbered in order), so
``model.generate`` works as for GPT-NeoX.

This file is copied next to exported weights so that ``from_pretrained(..., trust_remote_code=True)``
works where nasprune is not installed. It must therefore import nothing but the standard library,
``torch``, ``transformers`` and its sibling modules ``configuration_gpt_neox`` and ``modeling_decoder``
(what the pruned decoders share), which ``save_pretrained`` copies with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding

from .configuration_gpt_neox import PrunedGPTNeoXConfig
from .modeling_decoder import (
    PrunedCausalLMMixin,
    PrunedSequenceClassifierMixin,
    cache_slots,
    causal_mask,
    model_output,
    rotate,
    start_decoding,
)


class PrunedGPTNeoXAttention(nn.Module):
    """Causal self-attention over ``num_heads`` heads with partial rotary embeddings (pre-norm)."""

    def __init__(self, config: PrunedGPTNeoXConfig, num_heads: int, cache_index: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.cache_index = cache_index
        width = num_heads * self.head_dim
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.query = nn.Linear(config.hidden_size, width, bias=config.attention_bias)
        self.key = nn.Linear(config.hidden_size, width, bias=config.attention_bias)
        self.value = nn.Linear(config.hidden_size, width, bias=config.attention_bias)
        self.output = nn.Linear(width, config.hidden_size, bias=config.attention_bias)
        self.attention_dropout = config.attention_dropout
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
        cache: Cache | None,
    ) -> torch.Tensor:
        """The block's output, without the residual (the layer adds it)."""
        batch, length, _ = hidden_states.shape
        normed = self.LayerNorm(hidden_states)
        split = (batch, length, self.num_heads, self.head_dim)
        cos, sin = rotary
        query = rotate(self.query(normed).view(split).transpose(1, 2), cos, sin)
        key = rotate(self.key(normed).view(split).transpose(1, 2), cos, sin)
        value = self.value(normed).view(split).transpose(1, 2)
        if cache is not None:
            key, value = cache.update(key, value, self.cache_index)
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
            # The scale follows the unpruned head size, which pruning whole heads does not change.
            scale=self.head_dim**-0.5,
        )
        context = context.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.dropout(self.output(context))


class PrunedGPTNeoXFeedForward(nn.Module):
    """GPT-NeoX's MLP with ``num_units`` units (pre-norm); returns the block's output."""

    def __init__(self, config: PrunedGPTNeoXConfig, num_units: int):
        super().__init__()
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, num_units)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(num_units, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.output(self.activation(self.intermediate(self.LayerNorm(hidden_states)))))


class PrunedGPTNeoXLayer(nn.Module):
    """One layer; either block is ``None`` when the layer keeps no heads / no units."""

    def __init__(self, config: PrunedGPTNeoXConfig, index: int, cache_index: int):
        super().__init__()
        heads, units = config.heads_per_layer[index], config.units_per_layer[index]
        self.parallel = config.use_parallel_residual
        self.attention = PrunedGPTNeoXAttention(config, heads, cache_index) if heads > 0 else None
        self.feed_forward = PrunedGPTNeoXFeedForward(config, units) if units > 0 else None

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
        cache: Cache | None,
    ) -> torch.Tensor:
        attended = hidden_states
        if self.attention is not None:
            attended = hidden_states + self.attention(hidden_states, mask, rotary, cache)
        if self.feed_forward is None:
            return attended
        # Parallel residual: the FFN reads the layer's input, not the attention block's output.
        return attended + self.feed_forward(hidden_states if self.parallel else attended)


class PrunedGPTNeoXEncoder(nn.Module):
    """The layers; the key/value cache numbers only those with attention."""

    def __init__(self, config: PrunedGPTNeoXConfig):
        super().__init__()
        slots = cache_slots(config.heads_per_layer)
        self.layer = nn.ModuleList(PrunedGPTNeoXLayer(config, i, slots[i]) for i in range(config.num_hidden_layers))


class PrunedGPTNeoXPreTrainedModel(PreTrainedModel):
    config_class = PrunedGPTNeoXConfig
    base_model_prefix = "gpt_neox"
    supports_gradient_checkpointing = False
    _supports_sdpa = True


class PrunedGPTNeoXModel(PrunedGPTNeoXPreTrainedModel):
    """A pruned GPT-NeoX: token embeddings, pruned layers, the final LayerNorm."""

    _auto_class = "AutoModel"

    def __init__(self, config: PrunedGPTNeoXConfig):
        super().__init__(config)
        self.embed_in = nn.Embedding(config.vocab_size, config.hidden_size)
        self.emb_dropout = nn.Dropout(config.hidden_dropout)
        self.encoder = PrunedGPTNeoXEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.rotary_emb = GPTNeoXRotaryEmbedding(config=config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_in

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_in = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
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
            self.embed_in, input_ids, inputs_embeds, position_ids, cache, use_cache
        )
        length = inputs_embeds.shape[1]
        hidden = self.emb_dropout(inputs_embeds)
        mask = causal_mask(attention_mask, past, length, past + length, hidden.dtype, hidden.device)
        cos, sin = self.rotary_emb(hidden, position_ids=position_ids)
        rotary = (cos.unsqueeze(1), sin.unsqueeze(1))
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask, rotary, cache)
        return model_output(BaseModelOutputWithPast, cache, last_hidden_state=self.final_layer_norm(hidden))


class PrunedGPTNeoXForCausalLM(PrunedCausalLMMixin, PrunedGPTNeoXPreTrainedModel, GenerationMixin):
    """Pruned GPT-NeoX with its language-model head (``lm_head``)."""

    _auto_class = "AutoModelForCausalLM"
    _tied_weights_keys = {"lm_head.weight": "gpt_neox.embed_in.weight"}
    base_model_class = PrunedGPTNeoXModel


class PrunedGPTNeoXForSequenceClassification(PrunedSequenceClassifierMixin, PrunedGPTNeoXPreTrainedModel):
    """Pruned GPT-NeoX with its classification / regression head on the last non-padding token."""

    _auto_class = "AutoModelForSequenceClassification"
    base_model_class = PrunedGPTNeoXModel


__all__ = [
    "PrunedGPTNeoXForCausalLM",
    "PrunedGPTNeoXForSequenceClassification",
    "PrunedGPTNeoXModel",
    "PrunedGPTNeoXPreTrainedModel",
]
