"""Export a (pruned or dense) HF task model to an ONNX graph: inputs in, ``logits`` out.

:func:`export_onnx` writes a graph with dynamic batch and sequence axes, whose inputs are those the
tokenizer emits (:func:`onnx_input_names`: ``token_type_ids`` too for BERT). The ``onnx`` and
``onnxscript`` packages are optional (``pip install 'nasprune[onnx]'``); only exporting needs them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.export import Dim

from nasprune.errors import NaspruneError
from nasprune.inputs import random_inputs

ONNX_INSTALL_HINT = "pip install 'nasprune[onnx]'"


def _require_onnx() -> None:
    # onnx and onnxscript are optional (the 'onnx' extra) and torch.onnx.export imports them
    # itself: only ask whether they are installed, so a missing one gets the install hint.
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
        # Only when given: DistilBERT's models take no token types at all.
        types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **types).logits


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


# The exporter's operator registry logs a warning for each torchvision operator it skips when
# torchvision is not installed; text models never use them.
_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"


@contextlib.contextmanager
def _quiet_exporter_log() -> Iterator[None]:
    """Keep the exporter's operator registry to errors while exporting."""
    registry = logging.getLogger(_REGISTRY_LOGGER)
    level = registry.level
    registry.setLevel(logging.ERROR)
    try:
        yield
    finally:
        registry.setLevel(level)


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
    axes = {0: Dim("batch"), inputs["input_ids"].dim() - 1: Dim("sequence", max=_max_sequence_length(model.config))}
    if inputs["input_ids"].dim() == 3:
        axes[1] = Dim("choices")
    dynamic_shapes = {name: axes for name in names}
    # External data only when protobuf's 2 GB limit forces it: one file is easier to ship.
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    was_training = model.training
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), _quiet_exporter_log():
            # The exporter warns about every axis name shared by several inputs, which is intended,
            # and torch's own pytree code about a deprecation inside torch: neither is ours to act on.
            warnings.filterwarnings("ignore", message=".*axis name.*", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
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
