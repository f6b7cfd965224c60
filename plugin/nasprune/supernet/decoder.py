"""What decoder language models share: causal attention, a final norm after the last layer, and
two heads: the language-modelling head (next-token logits at every position) and HF's
``*ForSequenceClassification`` head, which scores the last token that is not padding.

Family adapters (``llama.py``, ``gpt2.py``, ``gpt_neox.py``) subclass :class:`DecoderAdapter` and
say where the embeddings, layers, final norm and heads are, and which ``transformers`` classes they take.
"""

from __future__ import annotations

import torch
from torch import nn

from nasprune.supernet.base import FamilyAdapter
from nasprune.supernet.encoder import dot_product_attention


def last_token_index(
    attention_mask: torch.Tensor | None, batch: int, length: int, device: torch.device
) -> torch.Tensor:
    """Per sequence, the position of its last token (True in ``attention_mask [N, T]``); the last
    position without a mask. Works for left and right padding."""
    if attention_mask is None:
        return torch.full((batch,), length - 1, dtype=torch.long, device=device)
    positions = torch.arange(length, device=device)
    return (positions * attention_mask.to(device=device, dtype=torch.long)).argmax(dim=-1)


def causal_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    ext_mask: torch.Tensor | None,
    dropout_p: float,
    scale: float,
) -> torch.Tensor:
    """Scaled dot-product attention as a decoder's ``attend`` function runs it: a causal encoder hands
    ``attend`` the causal mask combined with the padding, or None when there is no padding, where
    SDPA masks causally itself (``is_causal``, and its fused kernels)."""
    return dot_product_attention(query, key, value, ext_mask, dropout_p, scale, is_causal=ext_mask is None)


class AttentionDropout:
    """Attention-probability dropout of a family that keeps only its rate (``config.attention_dropout``):
    ``p`` and the ``training`` flag of the attention module, which is what the encoder reads."""

    def __init__(self, module: nn.Module, p: float):
        self.module, self.p = module, float(p)

    @property
    def training(self) -> bool:
        return self.module.training


def _transformers_classes(names: tuple[str, ...]) -> tuple[type, ...]:
    import transformers  # here, not at the top: `import nasprune` stays light

    return tuple(getattr(transformers, name) for name in names)


class DecoderAdapter(FamilyAdapter):
    """A decoder family: causal attention, the LM head and the last-token classification head.

    Subclasses set ``model_types``, ``base_attr``, the class names and, where their base model names
    them otherwise, ``layers_attr`` and ``final_norm_attr``; they implement :meth:`encoder_layer_modules`
    (or :meth:`layer_modules`) and, where the embeddings are more than the token embeddings, :meth:`embed`.
    """

    causal = True
    #: ``transformers`` names of the family's classes with a language-modelling head.
    causal_lm_class_names: tuple[str, ...] = ()
    #: ``transformers`` names of the family's classes with a sequence-classification head.
    sequence_classification_class_names: tuple[str, ...] = ()
    #: Attribute of the base model holding the layers.
    layers_attr: str = "layers"
    #: Attribute of the base model holding the norm after the last layer.
    final_norm_attr: str = "norm"
    #: Attribute of the task model holding the sequence-classification head (HF: ``score``).
    score_attr: str = "score"

    def causal_lm_classes(self) -> tuple[type, ...]:
        return _transformers_classes(self.causal_lm_class_names)

    def sequence_classification_classes(self) -> tuple[type, ...]:
        return _transformers_classes(self.sequence_classification_class_names)

    def multiple_choice_classes(self) -> tuple[type, ...]:
        return ()  # HF has no multiple-choice heads for decoders

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return getattr(self.base_model(model), self.layers_attr)

    def final_norm(self, model: nn.Module) -> nn.Module:
        """The norm after the last layer (Llama ``model.norm``, GPT-2 ``transformer.ln_f``)."""
        return getattr(self.base_model(model), self.final_norm_attr)

    def lm_head(self, model: nn.Module) -> nn.Module:
        return model.get_output_embeddings()

    def per_token_modules(self, model: nn.Module) -> list[nn.Module]:
        # The LM head runs on every position; the classification head once per sequence.
        return [self.lm_head(model)] if self.is_causal_lm(model) else []

    def is_causal_lm(self, model: nn.Module) -> bool:
        return bool(self.causal_lm_classes()) and isinstance(model, self.causal_lm_classes())

    def embed(self, model: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        # Decoders have no token types.
        return self.base_model(model).get_input_embeddings()(input_ids)

    def lm_logits(self, model: nn.Module, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.lm_head(model)(self.final_norm(model)(sequence_output))

    def logits(
        self, model: nn.Module, sequence_output: torch.Tensor, task_kind: str, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        if task_kind == "causal_lm":
            return self.lm_logits(model, sequence_output)
        hidden = self.final_norm(model)(sequence_output)
        batch, length = hidden.shape[:2]
        # HF scores every position and keeps the last non-padding one; scoring only that one is the same.
        last = last_token_index(attention_mask, batch, length, hidden.device)
        pooled = hidden[torch.arange(batch, device=hidden.device), last]
        return getattr(model, self.score_attr)(pooled)

    def head_logits(self, model: nn.Module, sequence_output: torch.Tensor, task_kind: str) -> torch.Tensor:
        return self.logits(model, sequence_output, task_kind, None)
