"""DistilBERT: its own module names, no token types, and a pre-classifier on the first token."""

from __future__ import annotations

import torch
from torch import nn

from nasprune.supernet.base import FamilyAdapter, register_adapter
from nasprune.supernet.encoder import LayerModules


@register_adapter
class DistilBertAdapter(FamilyAdapter):
    """``DistilBertForSequenceClassification`` and ``DistilBertForMultipleChoice``."""

    model_types = ("distilbert",)
    base_attr = "distilbert"

    def sequence_classification_classes(self) -> tuple[type, ...]:
        from transformers import DistilBertForSequenceClassification

        return (DistilBertForSequenceClassification,)

    def multiple_choice_classes(self) -> tuple[type, ...]:
        from transformers import DistilBertForMultipleChoice

        return (DistilBertForMultipleChoice,)

    def embed(self, model: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        # DistilBERT has no segment embeddings: token types carry nothing and are not passed.
        return self.embeddings(model)(input_ids)

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return self.base_model(model).transformer.layer

    def layer_modules(self, layer: nn.Module) -> LayerModules:
        attention, ffn = layer.attention, layer.ffn
        return LayerModules(
            query=attention.q_lin,
            key=attention.k_lin,
            value=attention.v_lin,
            attn_probs_dropout=attention.dropout,
            attn_out=attention.out_lin,
            # DistilBERT adds the attention output to the residual without a dropout.
            attn_out_dropout=nn.Identity(),
            attn_norm=layer.sa_layer_norm,
            ffn_in=ffn.lin1,
            activation=ffn.activation,
            ffn_out=ffn.lin2,
            ffn_out_dropout=ffn.dropout,
            ffn_norm=layer.output_layer_norm,
        )

    def head_logits(self, model: nn.Module, sequence_output: torch.Tensor, task_kind: str) -> torch.Tensor:
        # Both heads: first token -> pre_classifier -> ReLU -> dropout -> classifier.
        pooled = torch.relu(model.pre_classifier(sequence_output[:, 0]))
        return model.classifier(model.dropout(pooled))
