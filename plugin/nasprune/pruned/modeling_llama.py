"""Physically pruned Llama-family decoders (Llama, Mistral, Qwen2, Qwen3): every layer keeps its own
query heads, key/value heads and SwiGLU units.

The embeddings, RMSNorms, rotary embedding and LM head are HuggingFace's own modules and every
weight has the name it has in the family's stock model (``model.layers.<i>.self_attn.q_proj``, ...),
so a pruned model whose layers all keep the same widths is a stock model with a smaller config.
A layer is pre-norm, as in Llama: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``, where

- attention with ``h`` query heads over ``g`` key/value heads (``h // g`` query heads share one,
  grouped-query attention) projects to ``h * head_dim`` queries and ``g * head_dim`` keys and values,
  normalises each head's queries and keys (Qwen3), rotates them (rotary embeddings), attends causally
  (within ``sliding_window`` tokens in sliding-window layers) and projects back;
- the MLP with ``u`` units computes ``down(silu(gate(x)) * up(x))``;
- a layer with 0 heads has no attention block and one with 0 units no MLP block (no norm either).

Generation uses ``transformers``' key/value cache: the layers that have attention use cache slots
0, 1, 2, ... in order, so layers without heads neither store nor skew the cached length.

This file is copied next to exported weights so that ``from_pretrained(..., trust_remote_code=True)``
works where nasprune is not installed. It must therefore import nothing but the standard library,
``torch``, ``transformers`` and its sibling modules ``configuration_llama`` and ``modeling_decoder`` (what
the pruned decoders share), which ``save_pretrained`` copies with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding

from .configuration_llama import (
    PrunedLlamaConfig,
    PrunedMistralConfig,
    PrunedQwen2Config,
    PrunedQwen3Config,
    layer_window,
)
from .modeling_decoder import (
    PrunedCausalLMMixin,
    PrunedSequenceClassifierMixin,
    cache_slots,
    causal_mask,
    model_output,
    rotate,
    start_decoding,
)


#: The four families' configs: one set of modules serves them all.
FamilyConfig = PrunedLlamaConfig | PrunedMistralConfig | PrunedQwen2Config | PrunedQwen3Config


def _attention_layout(config: FamilyConfig) -> tuple[bool, bool, bool]:
    """(bias on q/k/v, bias on the output projection, per-head q/k RMSNorm) of the config's family."""
    family = str(config.model_type).removeprefix("nasprune_")
    bias = bool(getattr(config, "attention_bias", False))
    if family == "qwen2":
        return True, False, False
    if family == "qwen3":
        return bias, bias, True
    return bias, bias, False  # llama (attention_bias), mistral (no biases)


class PrunedLlamaAttention(nn.Module):
    """Causal grouped-query attention over ``num_heads`` query and ``num_kv_heads`` key/value heads."""

    def __init__(
        self, config: FamilyConfig, num_heads: int, num_kv_heads: int, cache_slot: int, window: int | None
    ):
        super().__init__()
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = config.head_dim
        self.cache_slot = cache_slot
        self.sliding_window = window
        self.attention_dropout = config.attention_dropout
        qkv_bias, out_bias, qk_norm = _attention_layout(config)
        self.q_proj = nn.Linear(config.hidden_size, num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, num_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, num_kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(num_heads * self.head_dim, config.hidden_size, bias=out_bias)
        if qk_norm:  # Qwen3: RMSNorm over each head's features, shared by all heads
            self.q_norm = LlamaRMSNorm(self.head_dim, eps=config.rms_norm_eps)
            self.k_norm = LlamaRMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        padding: torch.Tensor | None,
        past: int,
        cache: Cache | None,
    ) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        query = self.q_proj(hidden_states).view(batch, length, self.num_heads, self.head_dim)
        key = self.k_proj(hidden_states).view(batch, length, self.num_kv_heads, self.head_dim)
        value = self.v_proj(hidden_states).view(batch, length, self.num_kv_heads, self.head_dim)
        if hasattr(self, "q_norm"):
            query, key = self.q_norm(query), self.k_norm(key)
        query = rotate(query.transpose(1, 2), cos, sin)
        key = rotate(key.transpose(1, 2), cos, sin)
        value = value.transpose(1, 2)
        if cache is not None:
            key, value = cache.update(key, value, self.cache_slot)
        # Without padding, window or cache, SDPA's is_causal is exact (and takes the fused kernels).
        mask = None
        if padding is not None or self.sliding_window is not None or past > 0 or key.shape[-2] != length:
            mask = causal_mask(padding, past, length, key.shape[-2], query.dtype, query.device, self.sliding_window)
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
            is_causal=mask is None and length > 1,
            scale=self.head_dim**-0.5,
            enable_gqa=self.num_heads != self.num_kv_heads,
        )
        context = context.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.o_proj(context)


class PrunedLlamaMLP(nn.Module):
    """SwiGLU with ``num_units`` gate/up pairs."""

    def __init__(self, config: FamilyConfig, num_units: int):
        super().__init__()
        bias = bool(getattr(config, "mlp_bias", False))
        self.gate_proj = nn.Linear(config.hidden_size, num_units, bias=bias)
        self.up_proj = nn.Linear(config.hidden_size, num_units, bias=bias)
        self.down_proj = nn.Linear(num_units, config.hidden_size, bias=bias)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(hidden_states)) * self.up_proj(hidden_states))


class PrunedLlamaDecoderLayer(nn.Module):
    """One pre-norm layer; a block and its norm are absent when the layer keeps no heads / no units."""

    def __init__(self, config: FamilyConfig, index: int, cache_slot: int):
        super().__init__()
        heads, kv_heads = config.heads_per_layer[index], config.kv_heads_per_layer[index]
        units = config.units_per_layer[index]
        if heads > 0:
            self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.self_attn = PrunedLlamaAttention(config, heads, kv_heads, cache_slot, layer_window(config, index))
        else:
            self.input_layernorm = self.self_attn = None
        if units > 0:
            self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.mlp = PrunedLlamaMLP(config, units)
        else:
            self.post_attention_layernorm = self.mlp = None

    def forward(
        self,
        hidden_states: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        padding: torch.Tensor | None,
        past: int,
        cache: Cache | None,
    ) -> torch.Tensor:
        if self.self_attn is not None:
            hidden_states = hidden_states + self.self_attn(
                self.input_layernorm(hidden_states), cos, sin, padding, past, cache
            )
        if self.mlp is not None:
            hidden_states = hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))
        return hidden_states


class PrunedLlamaPreTrainedModel(PreTrainedModel):
    config_class = PrunedLlamaConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _no_split_modules = ["PrunedLlamaDecoderLayer"]


class PrunedLlamaModel(PrunedLlamaPreTrainedModel):
    """The pruned decoder: token embeddings, pruned layers, the final RMSNorm."""

    _auto_class = "AutoModel"

    def __init__(self, config: FamilyConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        slots = cache_slots(config.heads_per_layer)
        self.layers = nn.ModuleList(
            PrunedLlamaDecoderLayer(config, i, slots[i]) for i in range(config.num_hidden_layers)
        )
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config=config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast | tuple:
        """Run ``[N, T]`` token ids (or ``[N, T, d]`` embeddings) after the ``cache``'s tokens.

        ``attention_mask`` is the 2-D padding mask of the cached and the new tokens together (as
        ``generate`` passes it); ``past_key_values`` is accepted as the older name of ``cache``.
        """
        cache = cache if cache is not None else kwargs.pop("past_key_values", None)
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(
                "pruned Llama-family models take a 2-D padding mask [batch, past + length]; static caches "
                "and prepared 4-D masks are not supported"
            )
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        # Where no layer attends the cache stores nothing, and its length means nothing.
        attending = any(h > 0 for h in self.config.heads_per_layer)
        inputs_embeds, cache, past, position_ids = start_decoding(
            self.embed_tokens, input_ids, inputs_embeds, position_ids, cache, use_cache, attending, config=self.config
        )
        length = inputs_embeds.shape[1]
        if attention_mask is not None and attention_mask.shape[-1] != past + length:
            raise ValueError(
                f"attention_mask covers {attention_mask.shape[-1]} tokens but the cache holds {past} and "
                f"the input {length}"
            )
        padding = attention_mask
        if padding is not None and not torch.compiler.is_compiling() and bool(padding.all()):
            padding = None  # no padding: plain causal attention (not while tracing: data-dependent)
        cos, sin = self.rotary_emb(inputs_embeds, position_ids)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        hidden = inputs_embeds
        all_hidden = (hidden,) if output_hidden_states else None
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, padding, past, cache)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden,)
        hidden = self.norm(hidden)
        output = model_output(BaseModelOutputWithPast, cache, last_hidden_state=hidden, hidden_states=all_hidden)
        return output if return_dict else output.to_tuple()


class PrunedLlamaForCausalLM(PrunedCausalLMMixin, PrunedLlamaPreTrainedModel, GenerationMixin):
    """Pruned decoder with its language-modelling head; generates with ``model.generate``."""

    _auto_class = "AutoModelForCausalLM"
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    base_model_class = PrunedLlamaModel


class PrunedLlamaForSequenceClassification(PrunedSequenceClassifierMixin, PrunedLlamaPreTrainedModel):
    """Pruned decoder with HF's sequence-classification head: a linear ``score`` of the last
    non-padding token (the rightmost token that is not ``pad_token_id``)."""

    _auto_class = "AutoModelForSequenceClassification"
    base_model_class = PrunedLlamaModel


# The other families: the same modules under their own config (their differences, biases and
# Qwen3's q/k norms, are read off the config by `_attention_layout`).
class PrunedMistralModel(PrunedLlamaModel):
    config_class = PrunedMistralConfig


class PrunedMistralForCausalLM(PrunedLlamaForCausalLM):
    config_class = PrunedMistralConfig
    base_model_class = PrunedMistralModel


class PrunedMistralForSequenceClassification(PrunedLlamaForSequenceClassification):
    config_class = PrunedMistralConfig
    base_model_class = PrunedMistralModel


class PrunedQwen2Model(PrunedLlamaModel):
    config_class = PrunedQwen2Config


class PrunedQwen2ForCausalLM(PrunedLlamaForCausalLM):
    config_class = PrunedQwen2Config
    base_model_class = PrunedQwen2Model


class PrunedQwen2ForSequenceClassification(PrunedLlamaForSequenceClassification):
    config_class = PrunedQwen2Config
    base_model_class = PrunedQwen2Model


class PrunedQwen3Model(PrunedLlamaModel):
    config_class = PrunedQwen3Config


class PrunedQwen3ForCausalLM(PrunedLlamaForCausalLM):
    config_class = PrunedQwen3Config
    base_model_class = PrunedQwen3Model


class PrunedQwen3ForSequenceClassification(PrunedLlamaForSequenceClassification):
    config_class = PrunedQwen3Config
    base_model_class = PrunedQwen3Model


__all__ = [
    "PrunedLlamaForCausalLM",
    "PrunedLlamaForSequenceClassification",
    "PrunedLlamaModel",
    "PrunedLlamaPreTrainedModel",
    "PrunedMistralForCausalLM",
    "PrunedMistralForSequenceClassification",
    "PrunedMistralModel",
    "PrunedQwen2ForCausalLM",
    "PrunedQwen2ForSequenceClassification",
    "PrunedQwen2Model",
    "PrunedQwen3ForCausalLM",
    "PrunedQwen3ForSequenceClassification",
    "PrunedQwen3Model",
]
