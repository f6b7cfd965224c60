"""Save a sliced sub-network as a model folder that loads with ``from_pretrained``, and load it back.

:func:`export_subnetwork` writes the pruned model, its tokenizer, the modeling code (for
``trust_remote_code=True`` loading without nasprune), a model card and ``nasprune_export.json``,
atomically. :func:`load_pruned_model` loads such a folder with the Auto class its task needs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import transformers
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMultipleChoice,
    AutoModelForSequenceClassification,
)

from nasprune.counting import ParameterCounter, count_macs
from nasprune.errors import NaspruneError
from nasprune.export.card import model_card
from nasprune.export.slicing import slice_subnetwork
from nasprune.files import replace_folder
from nasprune.pruned import PRUNED_FAMILIES
from nasprune.pruned.stock import stock_family, to_stock_model
from nasprune.pruned.stock_gpt import STOCK_GPT_FAMILIES, fits_stock, to_stock_gpt
from nasprune.pruned.stock_llama import stock_decoder_family, to_stock_decoder
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import get_adapter, unwrap

#: Written next to the weights of an exported model: where it came from and what it keeps.
EXPORT_META_FILE = "nasprune_export.json"
EXPORT_FORMAT_VERSION = 1


def set_label_names(config: Any, label_names: Sequence[str] | None) -> None:
    """Write ``id2label`` / ``label2id`` into a classification config, so pipelines answer with names.

    Nothing changes for regression and multiple choice (one output, no class names) or when
    ``label_names`` is None; names that do not match ``num_labels`` are an error.
    """
    if not label_names or int(getattr(config, "num_labels", 0)) < 2:
        return
    names = [str(name) for name in label_names]
    if len(names) != config.num_labels:
        raise NaspruneError(
            f"the checkpoint names {len(names)} labels ({', '.join(names)}) but its model has "
            f"{config.num_labels} outputs"
        )
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}


def export_subnetwork(
    supernet: nn.Module,
    subnet: SubNetwork,
    tokenizer: Any,
    output_dir: str | os.PathLike,
    extra_metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    label_names: Sequence[str] | None = None,
    finish: Callable[[Path], Mapping[str, Any]] | None = None,
    macs_seq_length: int | None = None,
) -> Path:
    """Save ``subnet`` of ``supernet`` as a physically pruned HF model folder and return its path.

    The folder holds ``config.json`` (with an ``auto_map``), the weights, ``configuration.py`` and
    ``modeling.py`` (so ``from_pretrained(path, trust_remote_code=True)`` works without
    nasprune), the tokenizer (unless ``tokenizer`` is None), a model card, and
    ``nasprune_export.json``: the sub-network, its exact parameter count and ``extra_metadata``
    (e.g. the search results row; its keys never replace the computed ones).

    Where every kept layer keeps all heads and the same number of FFN units (:mod:`nasprune.pruned.stock`)
    the folder holds a stock model of the family instead (``model_type`` ``bert`` / ``roberta``, HF's
    weight names, no custom code), which tools that know only stock models load; so does a
    Llama-family decoder whose kept layers all keep the same numbers of query heads, key/value heads
    and units (:mod:`nasprune.pruned.stock_llama`). Otherwise
    ``auto_map`` names ``AutoModel`` too, so the base encoder loads with ``trust_remote_code=True``.
    ``nasprune_export.json`` says which (``format``: ``stock`` or ``nasprune``). With
    ``macs_seq_length`` it records the MACs at that sequence length, absolute and relative.

    ``label_names`` (class names by id) go into the config's ``id2label`` / ``label2id``.
    ``finish``, when given, is called with the folder once the model and tokenizer are in it (e.g. to
    load the model back and measure it, or to add an ONNX graph); the mapping it returns is added to
    ``nasprune_export.json``.

    It is written to a temporary sibling folder and renamed into place, so a crash (or an error in
    ``finish``) never leaves half a model. An existing ``output_dir`` is an error unless
    ``overwrite`` is True.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise NaspruneError(f"{output_dir} already exists; choose another folder or allow overwriting")
    hf_model = unwrap(supernet)
    pruned = slice_subnetwork(hf_model, subnet)
    set_label_names(pruned.config, label_names)
    stock_model = _as_stock(pruned, hf_model.config.model_type)
    stock = stock_model is not None
    model = stock_model if stock else pruned
    counter = ParameterCounter(hf_model)
    params = sum(p.numel() for p in model.parameters())
    meta = {
        **dict(extra_metadata or {}),
        "format_version": EXPORT_FORMAT_VERSION,
        "format": "stock" if stock else "nasprune",
        "architecture": type(model).__name__,
        "source_model": str(getattr(hf_model.config, "_name_or_path", "") or type(hf_model).__name__),
        "family": hf_model.config.model_type,
        "task_kind": get_adapter(hf_model.config.model_type).task_kind(hf_model),
        "subnet": subnet.to_dict(),
        "kept_layers": subnet.kept_layers,
        "heads_per_layer": subnet.heads_per_layer.tolist(),
        "units_per_layer": subnet.units_per_layer.tolist(),
        "params": params,
        "source_params": counter.total,
        "relative_params": params / counter.total,
    }
    if macs_seq_length is not None:
        shape = ModelShape.from_config(hf_model.config)
        macs = count_macs(subnet, shape, macs_seq_length)
        full_macs = count_macs(SubNetwork.full(shape), shape, macs_seq_length)
        meta.update(macs=macs, source_macs=full_macs, relative_macs=macs / full_macs,
                    macs_seq_length=macs_seq_length)

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        # Weights are saved from CPU so the folder does not depend on the device they lived on.
        model.to("cpu").save_pretrained(tmp)
        if not stock:
            _map_base_model(tmp / "config.json", hf_model.config.model_type)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if finish is not None:
            meta.update(finish(tmp))
        meta["transformers_version"] = transformers.__version__
        (tmp / EXPORT_META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
        (tmp / "README.md").write_text(model_card(meta, repo=str(output_dir)))
        replace_folder(tmp, output_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return output_dir


def _as_stock(pruned: nn.Module, source_model_type: str) -> nn.Module | None:
    """The stock HF model (same weights and logits) of a pruned model that one can hold, else None."""
    if source_model_type in STOCK_GPT_FAMILIES:  # GPT-2, GPT-NeoX: all heads and one FFN width
        return to_stock_gpt(pruned, source_model_type) if fits_stock(pruned.config) else None
    if stock_decoder_family(pruned.config) is not None:
        return to_stock_decoder(pruned)
    if stock_family(pruned.config, source_model_type) is not None:
        return to_stock_model(pruned, source_model_type)
    return None


def _map_base_model(config_path: Path, family: str) -> None:
    """Add ``AutoModel`` to the saved config's ``auto_map``, so the base encoder loads with remote code.

    ``save_pretrained`` maps only the saved class (``AutoConfig`` and the task's Auto class); the
    base model's class is in the same ``modeling.py``.
    """
    config = json.loads(config_path.read_text())
    base_model = PRUNED_FAMILIES[family].base_model
    # save_pretrained copies each class's own file (modeling.py, or a family's modeling_<name>.py).
    module = base_model.__module__.rsplit(".", 1)[-1]
    config.setdefault("auto_map", {})["AutoModel"] = f"{module}.{base_model.__name__}"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays (common in results rows) as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load_pruned_model(path: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """Load an exported model with the Auto class its task needs (multiple choice, causal LM or
    sequence classification)."""
    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise NaspruneError(f"could not load an exported model from {path}: {err}") from err
    architectures = getattr(config, "architectures", None) or []
    auto = AutoModelForSequenceClassification
    if any("MultipleChoice" in name for name in architectures):
        auto = AutoModelForMultipleChoice
    elif any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures):  # GPT2LMHeadModel
        auto = AutoModelForCausalLM
    return auto.from_pretrained(path, config=config, **kwargs)
