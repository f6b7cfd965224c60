"""Cut sub-networks out of a dense model into smaller, faster ``PreTrainedModel``\\ s, and save them.

- :func:`slice_subnetwork` copies the kept rows and columns of every projection into a
  :mod:`nasprune.pruned` model: Q/K/V rows and output-projection columns of the kept heads, FFN
  rows and columns of the kept units. Layers that keep neither heads nor units are dropped. Heads
  and units need not be a prefix: the kept ones are re-indexed in their original order.
- :func:`export_subnetwork` writes the pruned model, its tokenizer, the modeling code (for
  ``trust_remote_code=True`` loading without nasprune) and ``nasprune_export.json``, atomically.
- :func:`export_onnx` writes an ONNX graph with dynamic batch and sequence axes.
- :func:`pick_from_results` chooses the Pareto point to export from a search's results table.

Importing this module registers the pruned models with the ``transformers`` Auto classes, so
``AutoModelForSequenceClassification.from_pretrained(exported_dir)`` works after ``import nasprune``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from nasprune.counting import ParameterCounter
from nasprune.errors import NaspruneError
from nasprune.pruned import (
    PrunedBertConfig,
    PrunedBertForMultipleChoice,
    PrunedBertForSequenceClassification,
    PrunedBertModel,
    PrunedRobertaConfig,
    PrunedRobertaForMultipleChoice,
    PrunedRobertaForSequenceClassification,
    PrunedRobertaModel,
)
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import SuperNetwork, get_adapter

#: Written next to the weights of an exported model: where it came from and what it keeps.
EXPORT_META_FILE = "nasprune_export.json"
EXPORT_FORMAT_VERSION = 1
ONNX_INSTALL_HINT = "pip install 'nasprune[onnx]'"


@dataclass(frozen=True)
class PrunedFamily:
    """The pruned classes that replace one dense HF family."""

    config: type
    base_model: type
    sequence_classification: type
    multiple_choice: type

    def task_class(self, task_kind: str) -> type:
        return self.multiple_choice if task_kind == "multiple_choice" else self.sequence_classification


#: Dense HF ``model_type`` -> its pruned counterpart.
PRUNED_FAMILIES: dict[str, PrunedFamily] = {
    "bert": PrunedFamily(
        PrunedBertConfig, PrunedBertModel, PrunedBertForSequenceClassification, PrunedBertForMultipleChoice
    ),
    "roberta": PrunedFamily(
        PrunedRobertaConfig,
        PrunedRobertaModel,
        PrunedRobertaForSequenceClassification,
        PrunedRobertaForMultipleChoice,
    ),
}


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel*`` load pruned models by their ``model_type``. Idempotent."""
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForMultipleChoice,
        AutoModelForSequenceClassification,
    )

    for family in PRUNED_FAMILIES.values():
        AutoConfig.register(family.config.model_type, family.config, exist_ok=True)
        AutoModel.register(family.config, family.base_model, exist_ok=True)
        AutoModelForSequenceClassification.register(
            family.config, family.sequence_classification, exist_ok=True
        )
        AutoModelForMultipleChoice.register(family.config, family.multiple_choice, exist_ok=True)


register_auto_classes()


# ------------------------------------------------------------------------------------------------
# Slicing
# ------------------------------------------------------------------------------------------------
# Keys of a HF config that describe the dense checkpoint rather than the architecture.
_DROPPED_CONFIG_KEYS = ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path")


def _unwrap(model: nn.Module) -> nn.Module:
    return model.model if isinstance(model, SuperNetwork) else model


def _pruned_family(hf_model: nn.Module) -> PrunedFamily:
    model_type = getattr(hf_model.config, "model_type", "")
    get_adapter(model_type)  # a clear NaspruneError for families the super-network cannot run
    if model_type not in PRUNED_FAMILIES:
        raise NaspruneError(
            f"exporting {model_type!r} models is not supported; exportable families: "
            f"{', '.join(sorted(PRUNED_FAMILIES))}"
        )
    return PRUNED_FAMILIES[model_type]


def pruned_config(hf_config: Any, subnet: SubNetwork) -> Any:
    """The pruned config of ``subnet``: the dense config with one entry per *kept* layer."""
    family = PRUNED_FAMILIES.get(getattr(hf_config, "model_type", ""))
    if family is None:
        raise NaspruneError(f"cannot build a pruned config for model type {hf_config.model_type!r}")
    kept = subnet.kept_layers
    values = {k: v for k, v in hf_config.to_dict().items() if k not in _DROPPED_CONFIG_KEYS}
    values.update(
        num_hidden_layers=len(kept),
        heads_per_layer=[int(subnet.heads_per_layer[i]) for i in kept],
        units_per_layer=[int(subnet.units_per_layer[i]) for i in kept],
    )
    return family.config(**values)


def _head_rows(subnet: SubNetwork, layer: int, head_dim: int) -> torch.Tensor:
    """Output features of Q/K/V (= input features of the attention output) of the kept heads."""
    heads = subnet.head_indices(layer)
    rows = heads[:, None] * head_dim + np.arange(head_dim)[None, :]
    return torch.as_tensor(rows.reshape(-1), dtype=torch.long)


def _layer_state(modules: Any, subnet: SubNetwork, layer: int, head_dim: int, prefix: str) -> dict:
    """The pruned layer's weights, named as in :class:`nasprune.pruned.modeling.PrunedLayer`."""
    state: dict[str, torch.Tensor] = {}

    def put(name: str, module: nn.Module, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None):
        weight = module.weight.detach()
        if rows is not None:
            weight = weight.index_select(0, rows.to(weight.device))
        if cols is not None:
            weight = weight.index_select(1, cols.to(weight.device))
        state[f"{prefix}{name}.weight"] = weight
        if module.bias is not None:
            bias = module.bias.detach()
            state[f"{prefix}{name}.bias"] = bias if rows is None else bias.index_select(0, rows.to(bias.device))

    if subnet.head_mask[layer].any():
        rows = _head_rows(subnet, layer, head_dim)
        for name, module in (("query", modules.query), ("key", modules.key), ("value", modules.value)):
            put(f"attention.{name}", module, rows=rows)
        put("attention.output", modules.attn_out, cols=rows)
        put("attention.LayerNorm", modules.attn_norm)
    if subnet.unit_mask[layer].any():
        units = torch.as_tensor(subnet.unit_indices(layer), dtype=torch.long)
        put("feed_forward.intermediate", modules.ffn_in, rows=units)
        put("feed_forward.output", modules.ffn_out, cols=units)
        put("feed_forward.LayerNorm", modules.ffn_norm)
    return state


def slice_subnetwork(model: nn.Module, subnet: SubNetwork) -> nn.Module:
    """A physically pruned copy of ``subnet`` of ``model``, in eval mode.

    ``model`` is a :class:`~nasprune.supernet.SuperNetwork` or the HF task model it wraps
    (``Bert``/``RobertaForSequenceClassification`` or ``...ForMultipleChoice``). The result is a
    ``PreTrainedModel`` of :mod:`nasprune.pruned` on the same device and dtype, whose logits equal
    those of the super-network running ``subnet``, and whose parameter count equals
    ``ParameterCounter(model).count(subnet)``. The source model is not modified.
    """
    hf_model = _unwrap(model)
    family = _pruned_family(hf_model)
    adapter = get_adapter(hf_model.config.model_type)
    task_kind = adapter.task_kind(hf_model)
    shape = ModelShape.from_config(hf_model.config)
    expected = ((shape.num_layers, shape.num_heads), (shape.num_layers, shape.intermediate_size))
    if (subnet.head_mask.shape, subnet.unit_mask.shape) != expected:
        raise NaspruneError(
            f"sub-network masks {subnet.head_mask.shape} / {subnet.unit_mask.shape} do not fit this "
            f"model: expected head mask {expected[0]} and unit mask {expected[1]}"
        )

    config = pruned_config(hf_model.config, subnet)
    pruned = family.task_class(task_kind)(config)

    # Everything outside the encoder layers (embeddings, pooler, classifier) has the same names in
    # the dense and the pruned model, because the pruned model reuses HF's modules for them.
    source = hf_model.state_dict()
    encoder_prefix = f"{pruned.base_model_prefix}.encoder."
    state = {k: source[k] for k in pruned.state_dict() if not k.startswith(encoder_prefix)}
    layers = adapter.layers(hf_model)
    for new_index, old_index in enumerate(subnet.kept_layers):
        state.update(
            _layer_state(
                adapter.layer_modules(layers[old_index]),
                subnet,
                old_index,
                shape.head_dim,
                f"{encoder_prefix}layer.{new_index}.",
            )
        )
    reference = next(hf_model.parameters())
    pruned.to(device=reference.device, dtype=reference.dtype)
    pruned.load_state_dict(state, strict=True)
    return pruned.eval()


# ------------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------------
def _model_card(meta: Mapping[str, Any]) -> str:
    heads = meta["heads_per_layer"]
    units = meta["units_per_layer"]
    return (
        "---\nlibrary_name: transformers\ntags:\n- nasprune\n- pruned\n---\n\n"
        f"# Pruned {meta['family']} ({meta['task_kind']})\n\n"
        f"Cut out of `{meta['source_model']}` by nasprune neural architecture "
        f"search. It keeps {meta['params']:,} parameters ({meta['relative_params']:.1%} of the source), "
        f"{len(meta['kept_layers'])} of {len(heads)} layers.\n\n"
        f"- heads per source layer: {heads}\n- FFN units per source layer: {units}\n\n"
        "Load it with nasprune installed (`import nasprune` first), or without it:\n\n"
        "```python\nfrom transformers import AutoModelForSequenceClassification\n"
        "model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)\n```\n"
        "(use `AutoModelForMultipleChoice` for multiple-choice models).\n"
    )


def export_subnetwork(
    supernet: nn.Module,
    subnet: SubNetwork,
    tokenizer: Any,
    output_dir: str | os.PathLike,
    extra_metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save ``subnet`` of ``supernet`` as a physically pruned HF model folder and return its path.

    The folder holds ``config.json`` (with an ``auto_map``), the weights, ``configuration.py`` and
    ``modeling.py`` (so ``from_pretrained(path, trust_remote_code=True)`` works without
    nasprune), the tokenizer (unless ``tokenizer`` is None), a model card, and
    ``nasprune_export.json``: the sub-network, its exact parameter count and ``extra_metadata``
    (e.g. the search results row; its keys never replace the computed ones).

    It is written to a temporary sibling folder and renamed into place, so a crash never leaves
    half a model. An existing ``output_dir`` is an error unless ``overwrite`` is True.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise NaspruneError(f"{output_dir} already exists; choose another folder or allow overwriting")
    hf_model = _unwrap(supernet)
    pruned = slice_subnetwork(hf_model, subnet)
    counter = ParameterCounter(hf_model)
    params = sum(p.numel() for p in pruned.parameters())
    meta = {
        **dict(extra_metadata or {}),
        "format_version": EXPORT_FORMAT_VERSION,
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

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        # Weights are saved from CPU so the folder does not depend on the device they lived on.
        pruned.to("cpu").save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / EXPORT_META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
        (tmp / "README.md").write_text(_model_card(meta))
        old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        if output_dir.exists():
            output_dir.rename(old)
        tmp.rename(output_dir)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return output_dir


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays (common in results rows) as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load_pruned_model(path: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """Load an exported model with the Auto class its task needs (multiple choice or not)."""
    from transformers import AutoConfig, AutoModelForMultipleChoice, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise NaspruneError(f"could not load an exported model from {path}: {err}") from err
    architectures = getattr(config, "architectures", None) or []
    multiple_choice = any("MultipleChoice" in name for name in architectures)
    auto = AutoModelForMultipleChoice if multiple_choice else AutoModelForSequenceClassification
    return auto.from_pretrained(path, config=config, **kwargs)


# ------------------------------------------------------------------------------------------------
# ONNX
# ------------------------------------------------------------------------------------------------
def _require_onnx() -> None:
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise NaspruneError(
            f"ONNX export needs the {' and '.join(missing)} package{'s' if len(missing) > 1 else ''}: "
            f"{ONNX_INSTALL_HINT}"
        )


class _LogitsOnly(nn.Module):
    """Tensors in, logits out: the plain signature an ONNX graph needs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True
        ).logits


def _max_sequence_length(config: Any) -> int:
    """The longest input the position embeddings allow (RoBERTa's positions start after padding)."""
    longest = int(config.max_position_embeddings)
    if "roberta" in str(getattr(config, "model_type", "")):
        longest -= int(config.pad_token_id) + 1
    return longest


def example_batch(
    model: nn.Module, batch_size: int = 2, seq_len: int = 16, num_choices: int = 3, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random ``input_ids`` and an all-ones ``attention_mask`` shaped for ``model``'s task.

    The default sizes differ from each other on purpose: the exporter may treat axes whose example
    sizes coincide as one.
    """
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    multiple_choice = "MultipleChoice" in type(model).__name__
    shape = (batch_size, num_choices, seq_len) if multiple_choice else (batch_size, seq_len)
    # Ids above the padding id keep RoBERTa's padding-aware positions on the common path.
    low = min(int(config.pad_token_id or 0) + 1, config.vocab_size - 1)
    input_ids = torch.randint(low, config.vocab_size, shape, generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def export_onnx(
    model: nn.Module,
    output_path: str | os.PathLike,
    batch: Mapping[str, torch.Tensor] | None = None,
    opset_version: int | None = None,
) -> Path:
    """Export ``model`` (a pruned or dense HF task model) to ONNX; inputs in, ``logits`` out.

    ``batch`` is an example input dict (``input_ids``, ``attention_mask`` and optionally
    ``token_type_ids``; default: :func:`example_batch`). Its keys become the graph's inputs, whose
    batch and sequence axes (and the choice axis for multiple choice) are dynamic. Needs the
    ``onnx`` and ``onnxscript`` packages (``pip install 'nasprune[onnx]'``).
    """
    _require_onnx()
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    batch = dict(batch) if batch is not None else example_batch(model)
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch]
    if names[:2] != ["input_ids", "attention_mask"]:
        raise NaspruneError("the example batch for ONNX export needs input_ids and attention_mask")
    device = next(model.parameters()).device
    inputs = {name: batch[name].to(device) for name in names}

    # Named dims become the graph's symbolic axis names; the sequence bound keeps the exporter
    # from guarding on the example's length.
    from torch.export import Dim

    axes = {0: Dim("batch"), inputs["input_ids"].dim() - 1: Dim("sequence", max=_max_sequence_length(model.config))}
    if inputs["input_ids"].dim() == 3:
        axes[1] = Dim("choices")
    dynamic_shapes = {name: axes for name in names}
    # External data only when protobuf's 2 GB limit forces it: one file is easier to ship.
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    was_training = model.training
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # The exporter warns about every axis name shared by several inputs, which is intended.
            warnings.filterwarnings("ignore", message=".*axis name.*", category=UserWarning)
            program = torch.onnx.export(
                _LogitsOnly(model).eval(),
                (),
                kwargs=inputs,
                input_names=names,
                output_names=["logits"],
                dynamic_shapes=dynamic_shapes,
                opset_version=opset_version,
                dynamo=True,
                verbose=False,
            )
            program.save(str(output_path), external_data=param_bytes > 1_500_000_000)
    finally:
        model.train(was_training)
    return output_path


# ------------------------------------------------------------------------------------------------
# Choosing what to export
# ------------------------------------------------------------------------------------------------
_RESULT_COLUMNS = ("trial_id", "valid_error", "relative_params", "pareto", "subnet")


def pareto_front(results: pd.DataFrame) -> pd.DataFrame:
    """The Pareto rows of a results table, smallest first (``relative_params`` ascending).

    Ties are broken by ``valid_error`` then ``trial_id``, so the order, and hence ``--pick``, is
    deterministic. The index is reset: row ``i`` is what ``--pick i`` selects.
    """
    missing = [c for c in _RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise NaspruneError(f"the results table lacks the column(s) {', '.join(missing)}")
    pareto = results["pareto"]
    if pareto.dtype != bool:  # read back from CSV by hand, or written as strings
        pareto = pareto.astype(str).str.lower().isin(("true", "1"))
    front = results[pareto.to_numpy()]
    return front.sort_values(["relative_params", "valid_error", "trial_id"], kind="stable").reset_index(
        drop=True
    )


def pick_from_results(
    results: pd.DataFrame,
    pick: int | None = None,
    max_params: float | None = None,
    max_error: float | None = None,
) -> pd.Series:
    """Choose one Pareto point of a search's results table by exactly one criterion.

    :param results: the search's table (``trial_id``, ``valid_error``, ``relative_params``,
        ``pareto``, ``subnet``, ...), e.g. ``results.csv``
    :param pick: index into the Pareto set sorted by ``relative_params`` ascending (0 = the
        smallest model, -1 = the largest); see :func:`pareto_front`
    :param max_params: the most accurate Pareto point (lowest ``valid_error``) with
        ``relative_params <= max_params``
    :param max_error: the smallest Pareto point (lowest ``relative_params``) with
        ``valid_error <= max_error``
    :returns: the chosen row; ``SubNetwork.from_dict(json.loads(row["subnet"]))`` rebuilds it
    :raises NaspruneError: when not exactly one criterion is given, or no point qualifies
    """
    given = {"--pick": pick, "--max-params": max_params, "--max-error": max_error}
    chosen = [name for name, value in given.items() if value is not None]
    if len(chosen) != 1:
        raise NaspruneError(
            "choose the sub-network by exactly one of --pick, --max-params and --max-error"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    front = pareto_front(results)
    front = front[np.isfinite(front["valid_error"].to_numpy(dtype=float))].reset_index(drop=True)
    if front.empty:
        raise NaspruneError("the results table has no Pareto point with a finite validation error")

    if pick is not None:
        if not -len(front) <= pick < len(front):
            raise NaspruneError(
                f"--pick {pick} is out of range: the Pareto set has {len(front)} point(s), "
                f"indices 0..{len(front) - 1} from smallest to largest"
            )
        return front.iloc[pick]
    if max_params is not None:
        if not max_params > 0:
            raise NaspruneError(f"--max-params is a fraction of the full model's size, got {max_params}")
        fitting = front[front["relative_params"] <= max_params]
        if fitting.empty:
            raise NaspruneError(
                f"no Pareto point has relative_params <= {max_params}; the smallest has "
                f"{front['relative_params'].min():.4f}"
            )
        return fitting.sort_values(["valid_error", "relative_params"], kind="stable").iloc[0]
    fitting = front[front["valid_error"] <= max_error]
    if fitting.empty:
        raise NaspruneError(
            f"no Pareto point has valid_error <= {max_error}; the best has {front['valid_error'].min():.4f}"
        )
    return fitting.iloc[0]  # the front is sorted smallest first


def subnet_from_row(row: Mapping[str, Any]) -> SubNetwork:
    """The :class:`SubNetwork` stored in a results row's ``subnet`` column (JSON)."""
    value = row["subnet"]
    try:
        return SubNetwork.from_dict(json.loads(value) if isinstance(value, str) else value)
    except (ValueError, KeyError, TypeError) as err:
        raise NaspruneError(f"malformed 'subnet' entry in the results table: {err}") from err
