"""What the pruned decoders (GPT-2, GPT-NeoX, the Llama family) share: the causal mask over cached
and new tokens, rotary embeddings, the key/value cache's slot numbering, and the two heads, the
language-modelling head and HF's last-token sequence classifier.

Each family's ``modeling_<family>.py`` imports this module relatively (``from .modeling_decoder
import ...``). ``save_pretrained`` copies a model class's file together with the files it imports
relatively, and ``trust_remote_code`` loading loads them the same way, so this file lands next to
the exported weights too. It must therefore import nothing but the standard library, ``torch`` and
``transformers``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache
from transformers.loss.loss_utils import ForCausalLMLoss, ForSequenceClassificationLoss
from transformers.modeling_outputs import CausalLMOutputWithPast, SequenceClassifierOutputWithPast


def start_decoding(
    embed: nn.Module,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    cache: Cache | None,
    use_cache: bool,
    attending: bool = True,
    **cache_options: Any,
) -> tuple[torch.Tensor, Cache | None, int, torch.Tensor]:
    """What a pruned decoder's forward starts from: the input embeddings (``embed(input_ids)`` unless
    given; exactly one of the two), the cache it runs with (the caller's; a new
    ``DynamicCache(**cache_options)`` when caching without one; None when not caching, so a cache
    passed with ``use_cache=False`` is ignored), how many tokens that cache holds (0 when no layer
    ``attending``: nothing was stored), and the new tokens' position ids (after the cached ones
    unless given)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    if inputs_embeds is None:
        inputs_embeds = embed(input_ids)
    if not use_cache:
        cache = None
    elif cache is None:
        cache = DynamicCache(**cache_options)
    past = cache.get_seq_length() if cache is not None and attending else 0
    if position_ids is None:
        length = inputs_embeds.shape[1]
        position_ids = torch.arange(past, past + length, device=inputs_embeds.device).unsqueeze(0)
    return inputs_embeds, cache, past, position_ids


def cache_slots(heads_per_layer: list[int]) -> list[int]:
    """Each layer's slot in the key/value cache: only layers with attention store keys and values, so
    they take slots 0, 1, 2, ... in order and a layer without heads neither stores nor skews the
    cached length (the slot of a layer without heads is never read)."""
    return [sum(heads > 0 for heads in heads_per_layer[:layer]) for layer in range(len(heads_per_layer))]


def causal_mask(
    padding: torch.Tensor | None,
    past: int,
    query_length: int,
    key_length: int,
    dtype: torch.dtype,
    device: torch.device,
    window: int | None = None,
) -> torch.Tensor:
    """The additive mask ``[N or 1, 1, query_length, key_length]`` of queries at positions ``past``,
    ``past + 1``, ... over the *last* ``key_length`` positions (a sliding-window cache returns only
    those): query i sees key j iff j <= i, j is within ``window`` of i (when given) and j is a token
    (``padding [N, past + query_length]``, 1 = token; None = no padding)."""
    if padding is not None and padding.dim() != 2:
        raise ValueError("pruned models take a 2-D attention_mask [batch, keys] (1 = token, 0 = padding)")
    total = past + query_length
    queries = torch.arange(past, total, device=device)[:, None]
    keys = torch.arange(total - key_length, total, device=device)[None, :]
    allowed = keys <= queries
    if window is not None:
        allowed = allowed & (keys > queries - window)
    allowed = allowed[None, None]
    if padding is not None:
        allowed = allowed & padding[:, None, None, -key_length:].bool()
    # A finite minimum, never -inf: a query with no key left (left padding) gets a uniform softmax, not NaNs.
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of the first ``cos.shape[-1]`` features of ``[N, h, T, dh]`` (all of
    them in the Llama family, a fraction in GPT-NeoX); the other features pass unchanged."""
    rotary = cos.shape[-1]
    if rotary == x.shape[-1]:
        first, second = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-second, first), dim=-1) * sin
    turned, passed = x[..., :rotary], x[..., rotary:]
    first, second = turned.chunk(2, dim=-1)
    turned = turned * cos + torch.cat((-second, first), dim=-1) * sin
    return torch.cat((turned, passed), dim=-1)


def model_output(output_class: type, cache: Cache | None, **fields: Any) -> Any:
    """``output_class(**fields)`` with the cache under the name this ``transformers`` gives it
    (``cache`` from 5.x, ``past_key_values`` before)."""
    names = {field.name for field in dataclasses.fields(output_class)}
    fields["cache" if "cache" in names else "past_key_values"] = cache
    return output_class(**fields)


def output_cache(output: Any) -> Cache | None:
    """The cache an output carries, under either name (an empty cache is falsy: test for None)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def last_token_positions(
    input_ids: torch.Tensor | None, pad_token_id: int | None, batch: int, length: int, device: torch.device
) -> torch.Tensor:
    """HF's rule for last-token heads: per sequence, the rightmost token that is not ``pad_token_id``
    (the last position without ``input_ids`` or a pad token; then only one sequence is allowed)."""
    if pad_token_id is None and batch != 1:
        raise ValueError("Cannot handle batch sizes > 1 if no padding token is defined.")
    if pad_token_id is None or input_ids is None:
        return torch.full((batch,), length - 1, device=device)
    not_pad = (input_ids != pad_token_id).to(device, torch.int32)
    positions = torch.arange(input_ids.shape[-1], device=device, dtype=torch.int32)
    return (positions * not_pad).argmax(-1)


class PrunedCausalLMMixin:
    """A pruned decoder with its language-modelling head ``lm_head``.

    A family's class lists this mixin first, then its ``PreTrainedModel`` and ``GenerationMixin``
    (``transformers`` allows ``generate`` on classes that name ``GenerationMixin`` among their direct
    bases), and sets ``base_model_class``: the decoder, held under the family's
    ``base_model_prefix`` so that weights keep the family's names.
    """

    base_model_class: type

    def __init__(self, config: Any):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.base_model_class(config))
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast | tuple:
        """Next-token logits of ``[N, T]`` tokens after the ``cache``'s (the last ``logits_to_keep``
        positions only, when given); the mean next-token cross-entropy as ``loss`` with ``labels``.
        Other keyword arguments (GPT-2's ``token_type_ids``) go to the decoder."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if cache is not None else kwargs.pop("past_key_values", None),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep, :])
        loss = None
        if labels is not None:
            loss = ForCausalLMLoss(logits, labels, vocab_size=self.config.vocab_size)
        output = model_output(
            CausalLMOutputWithPast, output_cache(outputs), loss=loss, logits=logits,
            hidden_states=outputs.hidden_states,
        )
        return output if return_dict else output.to_tuple()


class PrunedSequenceClassifierMixin:
    """A pruned decoder with HF's sequence-classification head: a linear ``score`` of the last
    non-padding token (the rightmost token that is not ``pad_token_id``).

    A family's class lists this mixin first, then its ``PreTrainedModel``, and sets
    ``base_model_class`` (as :class:`PrunedCausalLMMixin`).
    """

    base_model_class: type

    def __init__(self, config: Any):
        super().__init__(config)
        self.num_labels = config.num_labels
        setattr(self, self.base_model_prefix, self.base_model_class(config))
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutputWithPast | tuple:
        """Class (or regression) logits ``[N, num_labels]`` of each sequence's last token; the task's
        loss with ``labels``. Other keyword arguments (GPT-2's ``token_type_ids``) go to the decoder."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        kwargs.pop("past_key_values", None)  # a classifier runs without a cache
        outputs = self.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=False,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        logits = self.score(outputs.last_hidden_state)
        batch, length = logits.shape[:2]
        last = last_token_positions(input_ids, self.config.pad_token_id, batch, length, logits.device)
        pooled = logits[torch.arange(batch, device=logits.device), last]
        loss = ForSequenceClassificationLoss(labels, pooled, self.config) if labels is not None else None
        output = model_output(
            SequenceClassifierOutputWithPast, None, loss=loss, logits=pooled, hidden_states=outputs.hidden_states
        )
        return output if return_dict else output.to_tuple()
