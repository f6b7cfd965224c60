"""DeBERTa-v2 and v3: BERT's post-norm layers with disentangled attention.

Each head's attention scores add to the content-to-content term a content-to-position term
(``c2p``: the query against the relative-position embeddings projected to keys) and a
position-to-content term (``p2c``: the key against them projected to queries). The relative
embeddings (LayerNorm'ed in v3) are shared by all layers; their projections are the layer's own key
and query projections (``share_att_key``, v3) or separate ones. Either way a head's position terms
read only that head's rows of those projections, so they slice with the head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nasprune.errors import NaspruneError
from nasprune.supernet.base import FamilyAdapter, register_adapter
from nasprune.supernet.encoder import LayerModules, Selector, linear_rows


def position_terms(attention: nn.Module) -> tuple[str, ...]:
    """The relative-position score terms a DeBERTa attention layer adds (``c2p``, ``p2c``)."""
    if not attention.relative_attention:
        return ()
    return tuple(term for term in ("c2p", "p2c") if term in attention.pos_att_type)


def relative_position_bias(
    query: torch.Tensor,
    key: torch.Tensor,
    relative_pos: torch.Tensor,
    span: int,
    pos_key: torch.Tensor | None,
    pos_query: torch.Tensor | None,
) -> torch.Tensor:
    """The ``c2p`` + ``p2c`` scores ``[N, h, T, T]`` (before scaling) of queries and keys ``[N, h, T, dh]``.

    ``pos_key`` / ``pos_query`` are the kept heads' relative-position embeddings projected to keys
    and queries, ``[h, 2 * span, dh]`` (None: the term is not used); ``relative_pos`` is ``[T, T]``
    (bucketed query - key distances).
    """
    length = query.shape[-2]
    bias = torch.zeros((), dtype=query.dtype, device=query.device)
    expand = (*query.shape[:2], length, length)
    if pos_key is not None:
        c2p = torch.matmul(query, pos_key.transpose(-1, -2))  # [N, h, T, 2 span]
        index = torch.clamp(relative_pos + span, 0, 2 * span - 1)
        bias = bias + torch.gather(c2p, -1, index.expand(expand))
    if pos_query is not None:
        p2c = torch.matmul(key, pos_query.transpose(-1, -2))  # [N, h, T(key), 2 span]
        index = torch.clamp(-relative_pos + span, 0, 2 * span - 1)
        bias = bias + torch.gather(p2c, -1, index.expand(expand)).transpose(-1, -2)
    return bias


class DisentangledAttention:
    """DeBERTa's attention of the kept heads: content scores plus the relative-position terms,
    computed with the kept heads' rows of the position projections only."""

    def __init__(self, attention: nn.Module, encoder: nn.Module):
        self.attention = attention
        self.encoder = encoder
        self.terms = position_terms(attention)

    def _positions(self, rel_embeddings: torch.Tensor, projection: nn.Linear, heads: Selector) -> torch.Tensor:
        rows = linear_rows(rel_embeddings, projection, heads)  # [2 span, h * dh]
        return rows.view(rows.shape[0], -1, self.attention.attention_head_size).transpose(0, 1)

    def __call__(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        ext_mask: torch.Tensor | None,
        dropout_p: float,
        scale: float,
        heads: Selector,
    ) -> torch.Tensor:
        from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position

        attention = self.attention
        # DeBERTa divides every term by sqrt(head_dim * (1 + number of position terms)).
        scale = 1.0 / math.sqrt(query.shape[-1] * (1 + len(self.terms)))
        mask = ext_mask
        if self.terms:
            span = attention.pos_ebd_size
            rel_embeddings = attention.pos_dropout(self.encoder.get_rel_embedding())[: 2 * span]
            relative_pos = build_relative_position(
                query, key, bucket_size=attention.position_buckets, max_position=attention.max_relative_positions
            )[0]
            shared = attention.share_att_key
            pos_key = pos_query = None
            if "c2p" in self.terms:
                pos_key = self._positions(
                    rel_embeddings, attention.key_proj if shared else attention.pos_key_proj, heads
                )
            if "p2c" in self.terms:
                pos_query = self._positions(
                    rel_embeddings, attention.query_proj if shared else attention.pos_query_proj, heads
                )
            bias = relative_position_bias(query, key, relative_pos, span, pos_key, pos_query) * scale
            mask = bias if mask is None else bias + mask
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout_p, scale=scale)


@register_adapter
class DebertaV2Adapter(FamilyAdapter):
    """``DebertaV2ForSequenceClassification`` and ``DebertaV2ForMultipleChoice`` (DeBERTa-v2 and v3)."""

    model_types = ("deberta-v2",)
    base_attr = "deberta"

    def sequence_classification_classes(self) -> tuple[type, ...]:
        from transformers import DebertaV2ForSequenceClassification

        return (DebertaV2ForSequenceClassification,)

    def multiple_choice_classes(self) -> tuple[type, ...]:
        from transformers import DebertaV2ForMultipleChoice

        return (DebertaV2ForMultipleChoice,)

    def task_kind(self, model: nn.Module) -> str:
        encoder = self.base_model(model).encoder
        if encoder.conv is not None:
            # DeBERTa-v2 xlarge/xxlarge add a convolution branch to the first layer's output.
            raise NaspruneError("DeBERTa-v2 models with a convolution layer (conv_kernel_size > 0) are not supported")
        if getattr(self.base_model(model), "z_steps", 0) > 1:
            raise NaspruneError("DeBERTa-v2 models with z_steps > 1 are not supported")
        return super().task_kind(model)

    def per_token_modules(self, model: nn.Module) -> list[nn.Module]:
        # The embedding projection when embedding_size differs from hidden_size.
        projection = self.embeddings(model).embed_proj
        return [] if projection is None else [projection]

    def encoder_layer_modules(self, model: nn.Module) -> list[LayerModules]:
        # The relative-position embeddings belong to the encoder, not to a layer.
        encoder = self.base_model(model).encoder
        return [self._layer_modules(layer, encoder) for layer in self.layers(model)]

    def layer_modules(self, layer: nn.Module) -> LayerModules:
        raise NotImplementedError("DeBERTa layers need the encoder's relative embeddings: use encoder_layer_modules")

    def _layer_modules(self, layer: nn.Module, encoder: nn.Module) -> LayerModules:
        attention = layer.attention.self
        terms = position_terms(attention)
        extra = ()
        if terms and not attention.share_att_key:
            extra = tuple(
                getattr(attention, name)
                for term, name in (("c2p", "pos_key_proj"), ("p2c", "pos_query_proj"))
                if term in terms
            )
        return LayerModules(
            query=attention.query_proj,
            key=attention.key_proj,
            value=attention.value_proj,
            attn_probs_dropout=attention.dropout,
            attn_out=layer.attention.output.dense,
            attn_out_dropout=layer.attention.output.dropout,
            attn_norm=layer.attention.output.LayerNorm,
            ffn_in=layer.intermediate.dense,
            activation=layer.intermediate.intermediate_act_fn,
            ffn_out=layer.output.dense,
            ffn_out_dropout=layer.output.dropout,
            ffn_norm=layer.output.LayerNorm,
            head_projections=extra,
            attend=DisentangledAttention(attention, encoder),
        )

    def head_logits(self, model: nn.Module, sequence_output: torch.Tensor, task_kind: str) -> torch.Tensor:
        # ContextPooler: the first token -> dropout -> dense -> activation; then dropout -> classifier.
        return model.classifier(model.dropout(model.pooler(sequence_output)))
