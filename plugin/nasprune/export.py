"""Cut sub-networks out of a dense model into smaller, faster ``PreTrainedModel``\\ s, and save them.

- :func:`slice_subnetwork` copies the kept rows and columns of every projection into a
  :mod:`nasprune.pruned` model: Q/K/V rows and output-projection columns of the kept heads, FFN
  rows and columns of the kept units. Layers that keep neither heads nor units are dropped. Heads
  and units need not be a prefix: the kept ones are re-indexed in their original order.
- :func:`export_subnetwork` writes the pruned model, its tokenizer, the modeling code (for
  ``trust_remote_code=True`` loading without nasprune) and ``nasprune_export.json``, atomically.
- :func:`export_onnx` writes an ONNX graph with dynamic batch and sequence axes, whose inputs are
  those the tokenizer emits (:func:`onnx_input_names`: ``token_type_ids`` too for BERT).
- :func:`pick_from_results` chooses the Pareto point to export from a search's results table.
- :class:`SearchResults`, :func:`check_row_has_weights`, :func:`check_results_checkpoint` and
  :func:`mask_scales_for_row` make sure a results row is exported from the weights that produced
  it; :func:`measure_exported_model` measures the exported folder as a user would load it.

The pruned models are registered with the ``transformers`` Auto classes by :mod:`nasprune.pruned`
(imported here), so ``AutoModelForSequenceClassification.from_pretrained(exported_dir)`` works
after ``import nasprune``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from nasprune.counting import ParameterCounter
from nasprune.errors import NaspruneError
from nasprune.files import replace_folder
from nasprune.inputs import random_inputs
from nasprune.pruned import PRUNED_FAMILIES, PrunedFamily
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import encoder_layers, get_adapter, head_feature_indices, unwrap

logger = logging.getLogger("nasprune")

#: Written next to the weights of an exported model: where it came from and what it keeps.
EXPORT_META_FILE = "nasprune_export.json"
EXPORT_FORMAT_VERSION = 1
ONNX_INSTALL_HINT = "pip install 'nasprune[onnx]'"


# ------------------------------------------------------------------------------------------------
# Slicing
# ------------------------------------------------------------------------------------------------
# Keys of a HF config that describe the dense checkpoint rather than the architecture.
_DROPPED_CONFIG_KEYS = ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path")


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
        rows = torch.as_tensor(head_feature_indices(subnet.head_indices(layer), head_dim), dtype=torch.long)
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
    hf_model = unwrap(model)
    family = _pruned_family(hf_model)
    task_kind = get_adapter(hf_model.config.model_type).task_kind(hf_model)
    shape = ModelShape.from_config(hf_model.config)
    shape.check(subnet)

    config = pruned_config(hf_model.config, subnet)
    pruned = family.task_class(task_kind)(config)

    # Everything outside the encoder layers (embeddings, pooler, classifier) has the same names in
    # the dense and the pruned model, because the pruned model reuses HF's modules for them.
    source = hf_model.state_dict()
    encoder_prefix = f"{pruned.base_model_prefix}.encoder."
    state = {k: source[k] for k in pruned.state_dict() if not k.startswith(encoder_prefix)}
    layers = encoder_layers(hf_model)
    for new_index, old_index in enumerate(subnet.kept_layers):
        state.update(
            _layer_state(
                layers[old_index],
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
) -> Path:
    """Save ``subnet`` of ``supernet`` as a physically pruned HF model folder and return its path.

    The folder holds ``config.json`` (with an ``auto_map``), the weights, ``configuration.py`` and
    ``modeling.py`` (so ``from_pretrained(path, trust_remote_code=True)`` works without
    nasprune), the tokenizer (unless ``tokenizer`` is None), a model card, and
    ``nasprune_export.json``: the sub-network, its exact parameter count and ``extra_metadata``
    (e.g. the search results row; its keys never replace the computed ones).

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
        if finish is not None:
            meta.update(finish(tmp))
        (tmp / EXPORT_META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
        (tmp / "README.md").write_text(_model_card(meta))
        replace_folder(tmp, output_dir)
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


#: The inputs an exported graph can take, in the order of the graph's inputs.
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_input_names(model: nn.Module, tokenizer: Any = None) -> list[str]:
    """The inputs ``model``'s ONNX graph should take: those its tokenizer emits, so that the
    tokenizer's output can be passed to onnxruntime as it is.

    Without a tokenizer: ``input_ids`` and ``attention_mask``, and ``token_type_ids`` where the
    model has segment embeddings to tell sentence pairs apart (BERT; not RoBERTa, whose single
    token type carries no information).
    """
    if tokenizer is not None:
        emitted = set(getattr(tokenizer, "model_input_names", ()))
        return ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in emitted else [])
    segments = int(getattr(model.config, "type_vocab_size", 0) or 0)
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if segments > 1 else [])


def example_batch(
    model: nn.Module,
    batch_size: int = 2,
    seq_len: int = 16,
    num_choices: int = 3,
    seed: int = 0,
    input_names: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Random ``input_ids``, an all-ones ``attention_mask`` and, if ``input_names`` (default:
    :func:`onnx_input_names`) has it, ``token_type_ids`` marking a second segment, shaped for
    ``model``'s task.

    The default sizes differ from each other on purpose: the exporter may treat axes whose example
    sizes coincide as one.
    """
    names = list(input_names) if input_names is not None else onnx_input_names(model)
    batch = random_inputs(model, batch_size, seq_len, num_choices, device="cpu", seed=seed)
    if "token_type_ids" in names:
        # A sentence pair: the second half of every row is segment 1 (where the model has one).
        second = 1 if int(getattr(model.config, "type_vocab_size", 1) or 1) > 1 else 0
        shape = batch["input_ids"].shape
        batch["token_type_ids"] = (torch.arange(seq_len) >= seq_len // 2).long().mul(second).expand(shape).clone()
    return batch


def export_onnx(
    model: nn.Module,
    output_path: str | os.PathLike,
    batch: Mapping[str, torch.Tensor] | None = None,
    opset_version: int | None = None,
    input_names: Sequence[str] | None = None,
) -> Path:
    """Export ``model`` (a pruned or dense HF task model) to ONNX; inputs in, ``logits`` out.

    The graph's inputs are ``input_names`` (default: :func:`onnx_input_names`; pass
    ``onnx_input_names(model, tokenizer)`` so that the tokenizer's output dict feeds the graph as
    it is), with dynamic batch and sequence axes (and choice axis for multiple choice).
    ``batch`` is an example input dict holding at least those inputs (default:
    :func:`example_batch`). Needs the ``onnx`` and ``onnxscript`` packages
    (``pip install 'nasprune[onnx]'``).
    """
    _require_onnx()
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if input_names is None:
        input_names = [k for k in ONNX_INPUTS if k in batch] if batch is not None else onnx_input_names(model)
    unknown = [name for name in input_names if name not in ONNX_INPUTS]
    if unknown:
        raise NaspruneError(f"ONNX export takes only the inputs {', '.join(ONNX_INPUTS)}, not {', '.join(unknown)}")
    batch = dict(batch) if batch is not None else example_batch(model, input_names=input_names)
    missing = [name for name in input_names if name not in batch]
    if missing:
        raise NaspruneError(f"the example batch for ONNX export lacks {', '.join(missing)}")
    names = [k for k in ONNX_INPUTS if k in input_names]
    if names[:2] != ["input_ids", "attention_mask"]:
        raise NaspruneError("an ONNX graph needs input_ids and attention_mask among its inputs")
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


# ------------------------------------------------------------------------------------------------
# Exporting a results row: what the row's weights are, and whether they belong to the checkpoint
# ------------------------------------------------------------------------------------------------
RESULTS_TABLE = "results.csv"
RESULTS_SUMMARY = "summary.json"


@dataclass(frozen=True)
class SearchResults:
    """The output folder of a search or baseline, as export reads it: the table and its summary."""

    directory: Path
    table: pd.DataFrame
    summary: dict[str, Any]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SearchResults":
        """Read ``results.csv`` and ``summary.json`` from a results folder (or from beside its ``results.csv``)."""
        path = Path(path)
        table_path = path / RESULTS_TABLE if path.is_dir() else path
        try:
            table = pd.read_csv(table_path)
        except (OSError, ValueError) as err:
            raise NaspruneError(f"cannot read the search results {table_path}: {err}") from None
        summary_path = table_path.parent / RESULTS_SUMMARY
        try:
            summary = json.loads(summary_path.read_text())
        except FileNotFoundError:
            raise NaspruneError(
                f"{summary_path} is missing, so nothing says which checkpoint and method produced "
                f"{table_path}; pass --results the whole output folder of a search or baseline"
            ) from None
        except (OSError, ValueError) as err:
            raise NaspruneError(f"cannot read the results summary {summary_path}: {err}") from None
        if not isinstance(summary, dict):
            raise NaspruneError(f"{summary_path} is not a results summary (expected a JSON object)")
        if summary.get("complete") is False:
            raise NaspruneError(
                f"the results in {table_path.parent} are incomplete (the run was interrupted while writing "
                "them); rerun the same search to finish them, then export"
            )
        return cls(table_path.parent, table, summary)

    @property
    def method(self) -> str:
        return str(self.summary.get("method", "unknown"))

    @property
    def is_standard_nas(self) -> bool:
        """Results of ``nasprune nas``: Syne Tune's record in the summary, each row's best epoch."""
        return "syne_tune" in self.summary or "best_epoch" in self.table.columns


def check_row_has_weights(results: SearchResults, row: Mapping[str, Any]) -> None:
    """Refuse rows whose error was measured on weights that neither the checkpoint nor the results hold.

    A sub-network of a weight-sharing search, of head pruning, of retraining-free pruning (its
    mask values are in ``mask_scales.json``) or of layer dropping without fine-tuning is cut out of
    the checkpoint's weights. Standard NAS fine-tunes every trial on its own and deletes its
    weights when the trial ends; the layer-drop baseline fine-tunes each reduced model; the
    reference-model baseline's row is another model altogether.
    """
    trial = int(row["trial_id"])
    if results.is_standard_nas:
        trial_folder = Path(str((results.summary.get("syne_tune") or {}).get("path", results.directory))) / str(trial)
        raise NaspruneError(
            f"{results.directory} holds standard-NAS results ('nasprune nas --method {results.method}'): trial "
            f"{trial} fine-tuned its own copy of the model and its weights were deleted when it ended, so "
            "there is nothing to cut out of --checkpoint; re-train that point first (fine-tune its sub-network "
            f"with 'python -m nasprune.worker' and the trial's settings, see {trial_folder}), or train and "
            "search a super-network ('nasprune run') and export from that"
        )
    if results.method == "reference_model":
        raise NaspruneError(
            f"trial {trial} of {results.directory} is the reference model "
            f"{row.get('reference_model', '')!s} fine-tuned on its own, not a sub-network of --checkpoint; "
            "use that model directly"
        )
    fine_tuned_epochs = int((results.summary.get("baseline") or {}).get("epochs", 0) or 0)
    if results.method == "layer_drop" and fine_tuned_epochs and int(row.get("dropped_layers", 0) or 0) > 0:
        raise NaspruneError(
            f"trial {trial} of the layer-drop baseline in {results.directory} was fine-tuned for "
            f"{fine_tuned_epochs} epoch(s) after dropping layers and those weights were not kept; re-train it "
            "('nasprune baseline --method layer-drop' writes no weights), or export a row of a search instead"
        )


def _same_folder(named: str, checkpoint: Path) -> bool:
    named_path = Path(named)
    try:
        return named_path.exists() and os.path.samefile(named_path, checkpoint)
    except OSError:
        return False


def check_results_checkpoint(results: SearchResults, checkpoint: Path, fingerprint: str | None) -> None:
    """Refuse results that were not measured on ``checkpoint`` (whose fingerprint is ``fingerprint``).

    Results record the fingerprint of the checkpoint they searched (``checkpoint_fingerprint`` in
    ``summary.json``). Results written before fingerprints existed only name the checkpoint's
    folder: then a warning says so and the folder must be the same.
    """
    recorded = results.summary.get("checkpoint_fingerprint")
    if recorded is not None:
        if recorded != fingerprint:
            raise NaspruneError(
                f"the results in {results.directory} come from another checkpoint than {checkpoint} "
                f"(fingerprint {str(recorded)[:12]}… there, {str(fingerprint)[:12]}… here): pass the "
                "--checkpoint that was searched, or search this one"
            )
        return
    named = results.summary.get("checkpoint")
    logger.warning(
        "%s records no checkpoint fingerprint (written by an older nasprune): only checking that it names "
        "the checkpoint folder %s",
        results.directory / RESULTS_SUMMARY, checkpoint,
    )
    if not named or not _same_folder(str(named), checkpoint):
        raise NaspruneError(
            f"the results in {results.directory} come from another checkpoint than {checkpoint} "
            f"(their summary names {named or 'none'}): pass the --checkpoint that was searched"
        )


def mask_scales_for_row(results: SearchResults, row: Mapping[str, Any], subnet: SubNetwork) -> Any:
    """The tuned mask values of a retraining-free-pruning row (a ``MaskScales``), or None.

    None for rows of other methods, for runs without mask tuning, and for the unpruned model's row
    (never tuned). A tuned row whose values are gone cannot be exported: its error is that of the
    tuned values, not of the checkpoint's weights.
    """
    from nasprune.baselines.rfp import MASK_SCALES_FILE, MaskScales

    if results.method != "rfp" or not (results.summary.get("baseline") or {}).get("tune_masks", False):
        return None
    trial = str(int(row["trial_id"]))
    path = results.directory / MASK_SCALES_FILE
    try:
        recorded = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as err:
        raise NaspruneError(f"cannot read the tuned mask values {path}: {err}") from None
    if trial not in recorded:
        if subnet.head_mask.all() and subnet.unit_mask.all():  # the unpruned model's row
            return None
        raise NaspruneError(
            f"{path} holds no tuned mask values for trial {trial}, so its error cannot be reproduced; "
            "rerun 'nasprune baseline --method rfp' into a fresh --output-dir"
        )
    try:
        return MaskScales.from_dict(recorded[trial], subnet)
    except NaspruneError as err:
        raise NaspruneError(f"{path}, trial {trial}: {err}") from None


def measure_exported_model(
    directory: str | os.PathLike,
    task_data: Any,
    max_seq_length: int,
    batch_size: int = 128,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Load an exported folder back as a user would (``from_pretrained`` of the model and its
    tokenizer) and measure ``valid_error`` and ``test_error`` (``1 - metric``) on ``task_data``'s
    validation and test splits, with the data pipeline and metric of the search."""
    from transformers import AutoTokenizer

    from nasprune import data
    from nasprune.baselines.reference_model import model_error

    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as err:
        raise NaspruneError(f"the exported folder {directory} has no usable tokenizer: {err}") from None
    model = load_pruned_model(directory).to(device or "cpu")
    errors = {}
    for split, column in (("validation", "valid_error"), ("test", "test_error")):
        encoded = data.tokenize_dataset(task_data.dataset[split], task_data.kind, tokenizer, max_seq_length)
        loader = data.make_dataloader(encoded, tokenizer, batch_size, shuffle=False, sort_by_length=True)
        errors[column] = model_error(model, loader, task_data.metric)
    return errors
