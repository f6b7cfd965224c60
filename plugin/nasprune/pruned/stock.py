"""Pruned models that stock HF classes can hold: every layer keeps all heads and the same units.

HF's own BERT and RoBERTa fix one FFN width for all layers and the head size as
``hidden_size // num_attention_heads``. A pruned model fits them when each of its layers keeps
*all* heads of the source (fewer heads would change that head size) and the same number of FFN
units, more than zero; it then has fewer layers and a narrower FFN, nothing else. Such a model is
exported as the stock family (``model_type`` ``bert`` / ``roberta``, stock weight names), so that
tools that know only stock models (optimum, ONNX Runtime's HF integration,
text-embeddings-inference) load it without custom code.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn
from transformers import (
    BertConfig,
    BertForMultipleChoice,
    BertForSequenceClassification,
    RobertaConfig,
    RobertaForMultipleChoice,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForMultipleChoice,
    XLMRobertaForSequenceClassification,
)

#: Dense ``model_type`` -> (stock config, sequence-classification class, multiple-choice class).
STOCK_CLASSES: dict[str, tuple[type, type, type]] = {
    "bert": (BertConfig, BertForSequenceClassification, BertForMultipleChoice),
    "roberta": (RobertaConfig, RobertaForSequenceClassification, RobertaForMultipleChoice),
    "xlm-roberta": (XLMRobertaConfig, XLMRobertaForSequenceClassification, XLMRobertaForMultipleChoice),
}
# The pruned layer's module names -> HF's, inside ``encoder.layer.<i>.``.
_STOCK_NAMES = {
    "attention.query": "attention.self.query",
    "attention.key": "attention.self.key",
    "attention.value": "attention.self.value",
    "attention.output": "attention.output.dense",
    "attention.LayerNorm": "attention.output.LayerNorm",
    "feed_forward.intermediate": "intermediate.dense",
    "feed_forward.output": "output.dense",
    "feed_forward.LayerNorm": "output.LayerNorm",
}
_LAYER_KEY = re.compile(r"^(?P<prefix>.*encoder\.layer\.\d+\.)(?P<module>[^.]+\.[^.]+)\.(?P<param>weight|bias)$")
# Keys of the pruned config that stock configs do not have.
_PRUNED_ONLY_KEYS = ("heads_per_layer", "units_per_layer", "model_type", "architectures", "auto_map",
                     "transformers_version", "_name_or_path")


def stock_family(config: Any, source_model_type: str | None = None) -> str | None:
    """The stock ``model_type`` a pruned config fits (see the module's docstring), or None.

    :param source_model_type: the dense model's ``model_type`` (XLM-RoBERTa exports to the pruned
        RoBERTa classes, and back to its own stock classes); default: the pruned config's family
    """
    family = source_model_type or str(getattr(config, "model_type", "")).removeprefix("nasprune_")
    if family not in STOCK_CLASSES:
        return None
    heads, units = list(config.heads_per_layer), list(config.units_per_layer)
    if not heads:
        return None
    if any(h != config.num_attention_heads for h in heads) or len(set(units)) != 1 or units[0] < 1:
        return None
    return family


def to_stock_model(pruned: nn.Module, source_model_type: str | None = None) -> nn.Module:
    """The stock HF model (same weights, same logits) of a pruned model that fits one.

    :raises ValueError: when :func:`stock_family` says it does not fit
    """
    config = pruned.config
    family = stock_family(config, source_model_type)
    if family is None:
        raise ValueError(
            f"a pruned model keeping heads {config.heads_per_layer} and units {config.units_per_layer} "
            "has no stock equivalent (every layer must keep all heads and the same units)"
        )
    config_class, sequence_classification, multiple_choice = STOCK_CLASSES[family]
    values = {k: v for k, v in config.to_dict().items() if k not in _PRUNED_ONLY_KEYS}
    values["intermediate_size"] = int(config.units_per_layer[0])
    stock_config = config_class(**values)
    multiple = "MultipleChoice" in type(pruned).__name__
    stock = (multiple_choice if multiple else sequence_classification)(stock_config)
    state = {}
    for key, value in pruned.state_dict().items():
        match = _LAYER_KEY.match(key)
        if match is not None:
            key = f"{match['prefix']}{_STOCK_NAMES[match['module']]}.{match['param']}"
        state[key] = value
    reference = next(pruned.parameters())
    stock.to(device=reference.device, dtype=reference.dtype)
    stock.load_state_dict(state, strict=True)
    return stock.eval()


__all__ = ["STOCK_CLASSES", "stock_family", "to_stock_model"]
