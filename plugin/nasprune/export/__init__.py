"""Cut sub-networks out of a dense model into smaller, faster ``PreTrainedModel``\\ s, and save them.

- :mod:`~nasprune.export.slicing`: :func:`slice_subnetwork` copies the kept heads' and units' rows
  and columns into a :mod:`nasprune.pruned` model (Llama-family decoders: :mod:`~nasprune.export.slicing_llama`).
- :mod:`~nasprune.export.saving`: :func:`export_subnetwork` writes the pruned model (a stock BERT /
  RoBERTa where every layer keeps all heads and the same units; a stock Llama-family decoder where
  every layer keeps the same query heads, key/value heads and units), its tokenizer, the modeling code
  (for ``trust_remote_code=True`` loading without nasprune), a model card and
  ``nasprune_export.json``, atomically; :func:`load_pruned_model` loads it back.
- :mod:`~nasprune.export.card`: :func:`model_card`, the folder's ``README.md`` in the Hub's format.
- :mod:`~nasprune.export.hub`: :func:`push_to_hub` uploads the folder with ``huggingface_hub``.
- :mod:`~nasprune.export.onnx`: :func:`export_onnx` writes an ONNX graph with dynamic batch and
  sequence axes, whose inputs are those the tokenizer emits (optional ``onnx`` extra).
- :mod:`~nasprune.export.picking`: :func:`pick_from_results` chooses the Pareto point to export from a
  search's results; :class:`SearchResults`, :func:`check_row_has_weights`,
  :func:`check_results_checkpoint` and :func:`mask_scales_for_row` make sure a row is exported from
  the weights that produced it.
- :mod:`~nasprune.export.measuring`: :func:`measure_exported_model` measures the exported folder as
  a user would load it.

The pruned models are registered with the ``transformers`` Auto classes by :mod:`nasprune.pruned`
(imported by the slicing), so ``AutoModelForSequenceClassification.from_pretrained(exported_dir)``
works after ``import nasprune``.
"""

from nasprune.export.card import model_card
from nasprune.export.hub import check_repo_id, push_to_hub
from nasprune.export.measuring import measure_exported_model
from nasprune.export.onnx import ONNX_INPUTS, ONNX_INSTALL_HINT, example_batch, export_onnx, onnx_input_names
from nasprune.export.picking import (
    RESULTS_SUMMARY,
    RESULTS_TABLE,
    SearchResults,
    check_results_checkpoint,
    check_row_has_weights,
    mask_scales_for_row,
    pareto_front,
    pick_from_results,
    subnet_from_row,
)
from nasprune.export.saving import (
    EXPORT_FORMAT_VERSION,
    EXPORT_META_FILE,
    export_subnetwork,
    load_pruned_model,
    set_label_names,
)
from nasprune.export.slicing import pruned_config, slice_subnetwork

__all__ = [
    "EXPORT_FORMAT_VERSION",
    "EXPORT_META_FILE",
    "ONNX_INPUTS",
    "ONNX_INSTALL_HINT",
    "RESULTS_SUMMARY",
    "RESULTS_TABLE",
    "SearchResults",
    "check_repo_id",
    "check_results_checkpoint",
    "check_row_has_weights",
    "example_batch",
    "export_onnx",
    "export_subnetwork",
    "load_pruned_model",
    "mask_scales_for_row",
    "measure_exported_model",
    "model_card",
    "onnx_input_names",
    "pareto_front",
    "pick_from_results",
    "pruned_config",
    "push_to_hub",
    "set_label_names",
    "slice_subnetwork",
    "subnet_from_row",
]
