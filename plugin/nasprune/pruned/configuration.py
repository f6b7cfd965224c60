"""Configurations of physically pruned BERT, RoBERTa, DistilBERT and ELECTRA models.

A pruned model keeps the embeddings and task head of its source model; each of its encoder
layers has its own number of attention heads and FFN units. The configuration therefore holds
the source model's config plus two per-layer lists, ``heads_per_layer`` and ``units_per_layer``.
``num_attention_heads`` and ``intermediate_size`` stay those of the *unpruned* model: they fix the
head size (``hidden_size // num_attention_heads``) and bound the per-layer counts.

This file is copied next to exported weights so that ``from_pretrained(..., trust_remote_code=True)``
works where nasprune is not installed. It must therefore import nothing but the standard library,
``torch``, ``transformers`` and ``huggingface_hub``.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import BertConfig, DistilBertConfig, ElectraConfig, RobertaConfig


class _PerLayerCountsMixin:
    """What both families add to their config: per-layer head and unit counts, filled and checked."""

    def __post_init__(self, **kwargs):
        # Default to an unpruned model: every layer keeps all heads and all units.
        if self.heads_per_layer is None:
            self.heads_per_layer = [self.num_attention_heads] * self.num_hidden_layers
        if self.units_per_layer is None:
            self.units_per_layer = [self.intermediate_size] * self.num_hidden_layers
        # JSON gives plain lists; tuples or numpy integers from callers are normalised here so that
        # configs compare and serialise the same whatever built them.
        self.heads_per_layer = [int(h) for h in self.heads_per_layer]
        self.units_per_layer = [int(u) for u in self.units_per_layer]
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Part of the `@strict` validation: the per-layer counts must fit the model."""
        super().validate_architecture()
        for name, counts, upper in (
            ("heads_per_layer", self.heads_per_layer, self.num_attention_heads),
            ("units_per_layer", self.units_per_layer, self.intermediate_size),
        ):
            if len(counts) != self.num_hidden_layers:
                raise ValueError(
                    f"{name} has {len(counts)} entries but num_hidden_layers is {self.num_hidden_layers}"
                )
            if any(not 0 <= c <= upper for c in counts):
                raise ValueError(f"{name} {counts} must lie in [0, {upper}]")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                f"{self.num_attention_heads}"
            )


@strict
class PrunedBertConfig(_PerLayerCountsMixin, BertConfig):
    r"""Configuration of a BERT model whose layers keep different numbers of heads and FFN units.

    Args:
        heads_per_layer (`list[int]`, *optional*):
            Attention heads of each encoder layer; 0 means the layer has no attention block.
            Defaults to `num_attention_heads` for every layer.
        units_per_layer (`list[int]`, *optional*):
            FFN units of each encoder layer; 0 means the layer has no feed-forward block.
            Defaults to `intermediate_size` for every layer.

    All other arguments are those of [`BertConfig`].
    """

    model_type = "nasprune_bert"
    # Saved into config.json's `auto_map`, with this file, by `save_pretrained`.
    _auto_class = "AutoConfig"

    heads_per_layer: list[int] | None = None
    units_per_layer: list[int] | None = None


@strict
class PrunedRobertaConfig(_PerLayerCountsMixin, RobertaConfig):
    r"""Configuration of a RoBERTa model whose layers keep different numbers of heads and FFN units.

    Args:
        heads_per_layer (`list[int]`, *optional*):
            Attention heads of each encoder layer; 0 means the layer has no attention block.
            Defaults to `num_attention_heads` for every layer.
        units_per_layer (`list[int]`, *optional*):
            FFN units of each encoder layer; 0 means the layer has no feed-forward block.
            Defaults to `intermediate_size` for every layer.

    All other arguments are those of [`RobertaConfig`].
    """

    model_type = "nasprune_roberta"
    _auto_class = "AutoConfig"

    heads_per_layer: list[int] | None = None
    units_per_layer: list[int] | None = None


@strict
class PrunedDistilBertConfig(_PerLayerCountsMixin, DistilBertConfig):
    r"""Configuration of a DistilBERT model whose layers keep different numbers of heads and FFN units.

    Args:
        heads_per_layer (`list[int]`, *optional*):
            Attention heads of each encoder layer; 0 means the layer has no attention block.
            Defaults to `n_heads` for every layer.
        units_per_layer (`list[int]`, *optional*):
            FFN units of each encoder layer; 0 means the layer has no feed-forward block.
            Defaults to `hidden_dim` for every layer.

    All other arguments are those of [`DistilBertConfig`].
    """

    model_type = "nasprune_distilbert"
    _auto_class = "AutoConfig"
    # The pruned layers read BERT's names; these are DistilBERT's for the same settings.
    attribute_map = {
        **DistilBertConfig.attribute_map,
        "intermediate_size": "hidden_dim",
        "hidden_act": "activation",
        "attention_probs_dropout_prob": "attention_dropout",
        "hidden_dropout_prob": "dropout",
    }
    # Fixed in DistilBERT's code rather than configurable.
    layer_norm_eps = 1e-12
    attention_output_dropout_prob = 0.0

    heads_per_layer: list[int] | None = None
    units_per_layer: list[int] | None = None


@strict
class PrunedElectraConfig(_PerLayerCountsMixin, ElectraConfig):
    r"""Configuration of an ELECTRA model whose layers keep different numbers of heads and FFN units.

    Args:
        heads_per_layer (`list[int]`, *optional*):
            Attention heads of each encoder layer; 0 means the layer has no attention block.
            Defaults to `num_attention_heads` for every layer.
        units_per_layer (`list[int]`, *optional*):
            FFN units of each encoder layer; 0 means the layer has no feed-forward block.
            Defaults to `intermediate_size` for every layer.

    All other arguments are those of [`ElectraConfig`].
    """

    model_type = "nasprune_electra"
    _auto_class = "AutoConfig"

    heads_per_layer: list[int] | None = None
    units_per_layer: list[int] | None = None


__all__ = ["PrunedBertConfig", "PrunedDistilBertConfig", "PrunedElectraConfig", "PrunedRobertaConfig"]
