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
``torch``, ``transformers`` and its sibling ``configuration_gpt_neox`` module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.loss.loss_utils import ForCausalLMLoss, ForSequenceClassificationLoss
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
)
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding

from .configuration_gpt_neox import PrunedGPTNeoXConfig


def causal_mask(
    attention_mask: torch.Tensor | None, length: int, past: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Additive mask ``[N or 1, 1, T, past + T]``: query i sees key j iff j <= past + i and key j is a
    token (``attention_mask [N, past + T]``, 1 = token; None = no padding)."""
    total = past + length
    hidden = torch.arange(total, device=device)[None, :] > torch.arange(past, total, device=device)[:, None]
    hidden = hidden.view(1, 1, length, total)
    if attention_mask is not None:
        if attention_mask.dim() != 2:
            raise ValueError("pruned models take a 2-D attention_mask [batch, keys] (1 = token, 0 = padding)")
        hidden = hidden | (attention_mask[:, None, None, -total:] == 0)
    # A finite minimum, never -inf: a padding query with no key left gets a uniform softmax, not NaNs.
    return torch.zeros(hidden.shape, dtype=dtype, device=device).masked_fill(hidden, torch.finfo(dtype).min)


def last_token_indices(input_ids: torch.Tensor | None, pad_token_id: int | None, batch: int) -> torch.Tensor | int:
    """HuggingFace's rule for last-token heads: the rightmost token that is not padding."""
    if pad_token_id is None:
        if batch != 1:
            raise ValueError("Cannot handle batch sizes > 1 if no padding token is defined.")
        return -1
    if input_ids is None:
        return -1
    non_pad = (input_ids != pad_token_id).to(torch.int32)
    positions = torch.arange(input_ids.shape[-1], device=input_ids.device, dtype=torch.int32)
    return (positions * non_pad).argmax(-1)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of the first ``cos.shape[-1]`` features of ``[N, h, T, dh]``; the rest pass."""
    rotary = cos.shape[-1]
    turned, passed = x[..., :rotary], x[..., rotary:]
    first, second = turned.chunk(2, dim=-1)
    turned = turned * cos + torch.cat((-second, first), dim=-1) * sin
    return torch.cat((turned, passed), dim=-1)


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
        count = config.num_hidden_layers
        cache_indices = [sum(h > 0 for h in config.heads_per_layer[:i]) for i in range(count)]
        self.layer = nn.ModuleList(PrunedGPTNeoXLayer(config, i, cache_indices[i]) for i in range(count))


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
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        cache = cache if cache is not None else kwargs.get("past_key_values")
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        if use_cache and cache is None:
            cache = DynamicCache()
        if inputs_embeds is None:
            inputs_embeds = self.embed_in(input_ids)
        length = inputs_embeds.shape[1]
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + length, device=inputs_embeds.device).unsqueeze(0)
        hidden = self.emb_dropout(inputs_embeds)
        mask = causal_mask(attention_mask, length, past, hidden.dtype, hidden.device)
        cos, sin = self.rotary_emb(hidden, position_ids=position_ids)
        rotary = (cos.unsqueeze(1), sin.unsqueeze(1))
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask, rotary, cache if use_cache else None)
        return BaseModelOutputWithPast(
            last_hidden_state=self.final_layer_norm(hidden), cache=cache if use_cache else None
        )


class PrunedGPTNeoXForCausalLM(PrunedGPTNeoXPreTrainedModel, GenerationMixin):
    """Pruned GPT-NeoX with its language-model head (``lm_head``)."""

    _auto_class = "AutoModelForCausalLM"
    _tied_weights_keys = {"lm_head.weight": "gpt_neox.embed_in.weight"}

    def __init__(self, config: PrunedGPTNeoXConfig):
        super().__init__(config)
        self.gpt_neox = PrunedGPTNeoXModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: Cache | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        outputs = self.gpt_neox(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            cache=cache if cache is not None else kwargs.get("past_key_values"),
            use_cache=use_cache,
        )
        hidden = outputs.last_hidden_state
        if isinstance(logits_to_keep, int):
            hidden = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
        else:
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)
        loss = ForCausalLMLoss(logits, labels, self.config.vocab_size) if labels is not None else None
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=outputs.cache)


class PrunedGPTNeoXForSequenceClassification(PrunedGPTNeoXPreTrainedModel):
    """Pruned GPT-NeoX with its classification / regression head on the last non-padding token."""

    _auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: PrunedGPTNeoXConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.gpt_neox = PrunedGPTNeoXModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutputWithPast:
        outputs = self.gpt_neox(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=False,
        )
        logits = self.score(outputs.last_hidden_state)
        batch = logits.shape[0]
        last = last_token_indices(input_ids, self.config.pad_token_id, batch)
        pooled = logits[torch.arange(batch, device=logits.device), last]
        loss = ForSequenceClassificationLoss(labels, pooled, self.config) if labels is not None else None
        return SequenceClassifierOutputWithPast(loss=loss, logits=pooled)


__all__ = [
    "PrunedGPTNeoXForCausalLM",
    "PrunedGPTNeoXForSequenceClassification",
    "PrunedGPTNeoXModel",
    "PrunedGPTNeoXPreTrainedModel",
]
