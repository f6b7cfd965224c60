"""The super-network: a fine-tuned HF model whose forward runs any selected sub-network.

Family specifics (where the encoder lives, which HF classes are supported, how the task head
turns the sequence output into logits) sit in small :class:`FamilyAdapter` subclasses, one file
per family in this package, registered with :func:`register_adapter`.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from nasprune.checkpoint import WEIGHTS_FILE, WEIGHTS_INDEX_FILE, weight_files
from nasprune.errors import NaspruneError
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet.encoder import MODES, LayerModules, LayerPlan, SubnetEncoder, compile_plan, scaled_plan

TASK_KINDS = ("classification", "regression", "multiple_choice", "causal_lm")

_ADAPTERS: dict[str, "FamilyAdapter"] = {}


class FamilyAdapter:
    """What differs between BERT-like families. The defaults follow BERT's module names."""

    #: HF ``config.model_type`` values this adapter handles.
    model_types: tuple[str, ...] = ()
    #: Attribute of the task model that holds the base encoder model (``model.bert``).
    base_attr: str = ""
    #: A decoder: tokens attend only to earlier tokens (see :mod:`nasprune.supernet.decoder`).
    causal: bool = False

    def position_offset(self, config: Any) -> int:
        """Position slots before the first token's (RoBERTa reserves the padding index and below)."""
        return 0

    def sequence_classification_classes(self) -> tuple[type, ...]:
        """HF classes with a sequence classification / regression head."""
        raise NotImplementedError

    def multiple_choice_classes(self) -> tuple[type, ...]:
        """HF classes with a multiple-choice head."""
        raise NotImplementedError

    def causal_lm_classes(self) -> tuple[type, ...]:
        """HF classes with a language-modelling head (decoders); encoders have none here."""
        return ()

    def lm_logits(self, model: nn.Module, sequence_output: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[N, T, V]`` from the last hidden states ``[N, T, d]`` (decoders)."""
        raise NaspruneError(f"{type(model).__name__} has no language-modelling head")

    def head_logits(self, model: nn.Module, sequence_output: torch.Tensor, task_kind: str) -> torch.Tensor:
        """Logits from the last hidden states ``[N, T, d]``; ``[N, 1]`` per choice for multiple choice."""
        raise NotImplementedError

    def logits(
        self, model: nn.Module, sequence_output: torch.Tensor, task_kind: str, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """:meth:`head_logits`; families whose head reads the padding mask ``[N, T]`` (True = token,
        None = no padding), e.g. to average over tokens, override this instead."""
        return self.head_logits(model, sequence_output, task_kind)

    # --- shared structure of BERT-like models ---------------------------------------------
    def base_model(self, model: nn.Module) -> nn.Module:
        return getattr(model, self.base_attr)

    def embeddings(self, model: nn.Module) -> nn.Module:
        return self.base_model(model).embeddings

    def embed(
        self, model: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """What the first encoder layer reads, ``[N, T, d]``, for ``[N, T]`` token ids."""
        return self.embeddings(model)(input_ids=input_ids, token_type_ids=token_type_ids)

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return self.base_model(model).encoder.layer

    def per_token_modules(self, model: nn.Module) -> list[nn.Module]:
        """Modules outside the encoder layers that run on every token (ELECTRA's embedding
        projection); the others there (pooler, task head) run once per sequence."""
        return []

    def encoder_layer_modules(self, model: nn.Module) -> list[LayerModules]:
        """The :class:`LayerModules` of every encoder layer, bottom first (override where a layer's
        forward reads modules of the model, such as a shared rotary embedding)."""
        return [self.layer_modules(layer) for layer in self.layers(model)]

    def layer_modules(self, layer: nn.Module) -> LayerModules:
        """Name the modules of one encoder layer by their role."""
        attention, output = layer.attention, layer.output
        return LayerModules(
            query=attention.self.query,
            key=attention.self.key,
            value=attention.self.value,
            attn_probs_dropout=attention.self.dropout,
            attn_out=attention.output.dense,
            attn_out_dropout=attention.output.dropout,
            attn_norm=attention.output.LayerNorm,
            ffn_in=layer.intermediate.dense,
            activation=layer.intermediate.intermediate_act_fn,
            ffn_out=output.dense,
            ffn_out_dropout=output.dropout,
            ffn_norm=output.LayerNorm,
        )

    def task_kind(self, model: nn.Module) -> str:
        """``classification``, ``regression``, ``multiple_choice`` or ``causal_lm``; raises for other heads."""
        if self.causal_lm_classes() and isinstance(model, self.causal_lm_classes()):
            return "causal_lm"
        if isinstance(model, self.multiple_choice_classes()):
            return "multiple_choice"
        if isinstance(model, self.sequence_classification_classes()):
            regression = model.config.num_labels == 1 or model.config.problem_type == "regression"
            return "regression" if regression else "classification"
        classes = self.sequence_classification_classes() + self.multiple_choice_classes() + self.causal_lm_classes()
        supported = [c.__name__ for c in classes]
        raise NaspruneError(
            f"{type(model).__name__} is not a supported task model; use one of {', '.join(supported)}"
        )

    def pooled_logits(self, model: nn.Module, sequence_output: torch.Tensor) -> torch.Tensor:
        """The BERT-style head: pooler -> dropout -> classifier."""
        pooled = self.base_model(model).pooler(sequence_output)
        return model.classifier(model.dropout(pooled))


def register_adapter(cls: type[FamilyAdapter]) -> type[FamilyAdapter]:
    """Class decorator: make a family adapter available to :func:`get_adapter`."""
    adapter = cls()
    for model_type in cls.model_types:
        _ADAPTERS[model_type] = adapter
    return cls


def supported_families() -> list[str]:
    """The HF ``model_type`` values nasprune can run as super-networks."""
    return sorted(_ADAPTERS)


def get_adapter(model_type: str) -> FamilyAdapter:
    """The adapter for a HF ``config.model_type``; :class:`NaspruneError` when unsupported."""
    try:
        return _ADAPTERS[model_type]
    except KeyError:
        raise NaspruneError(
            f"model type {model_type!r} is not supported; supported families: "
            f"{', '.join(supported_families())}"
        ) from None


class SuperNetwork(nn.Module):
    """A HF sequence-classification, multiple-choice or causal-LM model that runs selected sub-networks.

    The forward runs the full network unless a sub-network is active (see :meth:`select`).
    Parameters are those of the wrapped model, so training the super-network trains the model.
    A causal-LM model's logits are ``[B, T, V]`` (next-token logits at every position).
    """

    def __init__(self, hf_model: nn.Module, mode: str = "slice"):
        super().__init__()
        self.model = hf_model
        self._adapter = get_adapter(getattr(hf_model.config, "model_type", ""))
        self._task_kind = self._adapter.task_kind(hf_model)
        self._shape = ModelShape.from_config(hf_model.config)
        self._full = SubNetwork.full(self._shape)
        self._encoder = SubnetEncoder(encoder_layers(hf_model), self._shape, causal=self._adapter.causal)
        self.mode = mode
        self._active: SubNetwork | None = None
        self._scaled: list[LayerPlan] | None = None
        self._plan_key: tuple | None = None
        self._plan: list | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        task_kind: str = "classification",
        num_labels: int | None = None,
        mode: str = "slice",
        **kwargs: Any,
    ) -> "SuperNetwork":
        """Load a HF checkpoint with :func:`load_hf_model` and wrap it."""
        return cls(load_hf_model(name_or_path, task_kind, num_labels, **kwargs), mode=mode)

    # --- properties -----------------------------------------------------------------------
    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def shape(self) -> ModelShape:
        return self._shape

    @property
    def adapter(self) -> FamilyAdapter:
        return self._adapter

    @property
    def task_kind(self) -> str:
        return self._task_kind

    @property
    def active(self) -> SubNetwork | None:
        """The selected sub-network, or None while the full network runs."""
        return self._active

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise NaspruneError(f"unknown super-network mode {mode!r}; expected one of {', '.join(MODES)}")
        self._mode = mode
        self._plan_key = None

    # --- sub-network selection ------------------------------------------------------------
    def check(self, subnet: SubNetwork) -> None:
        """Raise :class:`NaspruneError` unless ``subnet`` was cut from a model of this shape."""
        self._shape.check(subnet)

    @contextmanager
    def select(self, subnet: SubNetwork | None) -> Iterator["SuperNetwork"]:
        """Run ``subnet`` (None: the full network) inside the block; restore the previous one after."""
        if subnet is not None:
            self.check(subnet)
        previous = self._active
        self._active = subnet
        try:
            yield self
        finally:
            self._active = previous

    @contextmanager
    def scaled(
        self, head_scale: torch.Tensor, unit_scale: torch.Tensor, subnet: SubNetwork | None = None
    ) -> Iterator["SuperNetwork"]:
        """Inside the block, every forward multiplies each head's context by ``head_scale [L, H]``
        and each FFN unit's activation by ``unit_scale [L, I]``, with the full weights.

        The scales are real numbers and may require grad: the gradient of a loss with respect to
        them is that of the mask variables (importance, Fisher information). Scales ``[N, L, H]``
        and ``[N, L, I]`` give each of the N sequences the encoder runs its own (a multiple-choice
        batch of B examples and C choices runs N = B·C). Blocks that keep no head or unit in
        ``subnet`` (default: the full network) are skipped, as that sub-network skips them. This
        takes precedence over :meth:`select` and the mode.
        """
        subnet = subnet if subnet is not None else self._full
        self.check(subnet)
        if head_scale.dim() != unit_scale.dim() or head_scale.dim() not in (2, 3) or (
                head_scale.shape[:-2] != unit_scale.shape[:-2]):
            raise NaspruneError(f"scales {tuple(head_scale.shape)} / {tuple(unit_scale.shape)}: expected "
                                "[layers, heads] / [layers, units], or both with the same leading [rows]")
        self._shape.check_per_head_and_unit(tuple(head_scale.shape[-2:]), tuple(unit_scale.shape[-2:]), "scales")
        previous = self._scaled
        self._scaled = scaled_plan(subnet, head_scale, unit_scale, self._shape.num_kv_heads)
        try:
            yield self
        finally:
            self._scaled = previous

    def _current_plan(self, device: torch.device, dtype: torch.dtype) -> Sequence[LayerPlan]:
        if self._scaled is not None:
            return self._scaled
        subnet = self._active if self._active is not None else self._full
        key = (subnet, self._mode, device, dtype)
        if key != self._plan_key:
            self._plan = compile_plan(subnet, self._shape, self._mode, device, dtype)
            self._plan_key = key
        return self._plan

    # --- forward --------------------------------------------------------------------------
    def embed(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embedding output and additive attention mask; neither depends on the sub-network.

        Inputs are ``[B, T]``, or ``[B, C, T]`` for multiple choice. The outputs keep the leading
        dimensions: hidden ``[..., T, d]`` and mask ``[..., 1, 1, T]`` (None without a mask), so a
        cached validation set can be sliced by example and fed to :meth:`forward_from_embeddings`.
        """
        lead = input_ids.shape[:-1]
        length = input_ids.shape[-1]
        flat_ids = input_ids.reshape(-1, length)
        flat_types = None if token_type_ids is None else token_type_ids.reshape(-1, length)
        hidden = self._adapter.embed(self.model, flat_ids, flat_types)
        hidden = hidden.view(*lead, length, hidden.shape[-1])
        if attention_mask is None:
            return hidden, None
        keep = attention_mask.to(device=hidden.device, dtype=hidden.dtype)
        ext_mask = (1.0 - keep) * torch.finfo(hidden.dtype).min
        return hidden, ext_mask.view(*lead, 1, 1, length)

    def encode(self, hidden: torch.Tensor, ext_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Run the encoder layers of the active sub-network (or :meth:`scaled` plan) on ``[N, T, d]`` embeddings."""
        plan = self._current_plan(hidden.device, hidden.dtype)
        return self._encoder(hidden, ext_mask, plan)

    def forward_from_embeddings(
        self, hidden: torch.Tensor, ext_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits of the active sub-network from the output of :meth:`embed`."""
        multiple_choice = self._task_kind == "multiple_choice"
        if hidden.dim() != (4 if multiple_choice else 3):
            raise NaspruneError(
                f"expected {'[B, C, T, d]' if multiple_choice else '[B, T, d]'} embeddings for a "
                f"{self._task_kind} model, got shape {tuple(hidden.shape)}"
            )
        length, width = hidden.shape[-2:]
        flat_mask = None if ext_mask is None else ext_mask.reshape(-1, 1, 1, length)
        sequence_output = self.encode(hidden.reshape(-1, length, width), flat_mask)
        # The additive mask is 0 exactly at the tokens (see embed).
        tokens = None if flat_mask is None else flat_mask.reshape(-1, length) == 0
        logits = self._adapter.logits(self.model, sequence_output, self._task_kind, tokens)
        if multiple_choice:
            logits = logits.view(hidden.shape[0], hidden.shape[1])
        return logits

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``[B, num_labels]`` (``[B, C]`` for multiple choice, ``[B, T, V]`` for a causal
        LM) of the active sub-network.

        ``labels`` is accepted so a whole batch dict can be passed, and ignored: callers compute
        their own loss (cross-entropy, distillation, ...).
        """
        hidden, ext_mask = self.embed(input_ids, attention_mask, token_type_ids)
        return self.forward_from_embeddings(hidden, ext_mask)


def unwrap(model: nn.Module) -> nn.Module:
    """The HF task model: the one a :class:`SuperNetwork` wraps, or ``model`` itself."""
    return model.model if isinstance(model, SuperNetwork) else model


def encoder_layers(model: nn.Module) -> list[LayerModules]:
    """The modules of every encoder layer of ``model`` (a HF model of a supported family or a
    :class:`SuperNetwork`), named by their role, bottom layer first."""
    hf_model = unwrap(model)
    adapter = get_adapter(getattr(hf_model.config, "model_type", ""))
    return adapter.encoder_layer_modules(hf_model)


#: Task-head output layers of HF checkpoints: their rows are the head's outputs.
_HEAD_OUTPUT_WEIGHTS = ("classifier.out_proj.weight", "classifier.weight", "score.weight")
#: A HuggingFace hub id: ``name`` or ``owner/name``. Anything else is meant as a local path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def has_task_head(config: Any) -> bool:
    """Whether a HF config was saved from a task model (a trained head) rather than a bare encoder."""
    saved_as = getattr(config, "architectures", None) or []
    return any(name.endswith(("ForSequenceClassification", "ForMultipleChoice")) for name in saved_as)


def max_positions(config: Any) -> int | None:
    """The longest input the model's position embeddings cover; None if the config does not say."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return None
    adapter = _ADAPTERS.get(getattr(config, "model_type", ""))
    return positions - (adapter.position_offset(config) if adapter is not None else 0)


def check_max_seq_length(hf_model: Any, length: int) -> None:
    """Refuse a ``--max-seq-length`` beyond the positions of ``hf_model`` (a model or its config)."""
    config = getattr(hf_model, "config", hf_model)
    limit = max_positions(config)
    if limit is not None and length > limit:
        offset = config.max_position_embeddings - limit
        detail = f"max_position_embeddings {config.max_position_embeddings}" + (
            f" minus a padding offset of {offset}" if offset else ""
        )
        raise NaspruneError(
            f"--max-seq-length {length} is longer than the model's {limit} positions ({detail}); "
            f"pass --max-seq-length {limit} or less"
        )


def local_model_folder(name_or_path: str) -> Path | None:
    """The local folder meant by ``name_or_path``; None for a hub id; an error for a missing path."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NaspruneError(f"model path {name_or_path} is a file; pass the folder that holds config.json")
    if name_or_path.startswith((".", "~", os.sep)) or not _HUB_ID.match(name_or_path):
        raise NaspruneError(f"model path {name_or_path} does not exist")
    return None


def _check_local_weights(folder: Path) -> int | None:
    """Refuse pickled or unreadable weights; return the saved task head's number of outputs, if any.

    Reads only the safetensors headers (a few kilobytes), so a truncated file is caught here with
    its name rather than deep inside ``from_pretrained``.
    """
    from safetensors import SafetensorError, safe_open

    if not (folder / WEIGHTS_FILE).is_file() and not (folder / WEIGHTS_INDEX_FILE).is_file():
        if any((folder / name).is_file() for name in _PICKLED_WEIGHTS):
            raise NaspruneError(
                f"{folder} holds only pytorch_model.bin, a pickle file that can run code when loaded, so nasprune "
                "does not load it; if you trust it, convert it once: load it with transformers' from_pretrained"
                "(folder, use_safetensors=False), which runs its pickle code, and save it with save_pretrained"
                "(folder) (older transformers: save_pretrained(folder, safe_serialization=True))"
            )
        return None  # no weights at all: from_pretrained says what it looked for
    head_outputs = None
    for path in weight_files(folder):
        try:
            with safe_open(str(path), framework="pt", device="cpu") as stream:
                names = set(stream.keys())
                for name in _HEAD_OUTPUT_WEIGHTS:
                    if name in names:
                        head_outputs = stream.get_slice(name).get_shape()[0]
                        break
        except (SafetensorError, OSError) as err:
            raise NaspruneError(
                f"model weights {path} cannot be read (truncated or corrupt: {err}); restore the file"
            ) from None
    return head_outputs


def _check_saved_head(
    name_or_path: str, config: Any, task_kind: str, num_labels: int | None, head_outputs: int | None
) -> None:
    """Refuse a trained task head that does not fit the task; a bare encoder gets a new head."""
    if not has_task_head(config):
        return
    if task_kind == "causal_lm":
        raise NaspruneError(
            f"model {name_or_path} was saved with a task head ({', '.join(config.architectures)}), not a "
            "language-modelling head; for --task lm use the pre-trained (or LM fine-tuned) causal language model"
        )
    saved_multiple_choice = any(a.endswith("ForMultipleChoice") for a in config.architectures)
    if saved_multiple_choice != (task_kind == "multiple_choice"):
        saved = "multiple-choice" if saved_multiple_choice else "sequence-classification"
        raise NaspruneError(
            f"model {name_or_path} has a trained {saved} head, but the task is {task_kind}; "
            "use a model fine-tuned for this task, or the pre-trained encoder without a task head"
        )
    if saved_multiple_choice:  # one score per choice: nothing to count
        return
    if head_outputs is not None and head_outputs != config.num_labels:
        raise NaspruneError(
            f"{name_or_path}: config.json says num_labels {config.num_labels}, but the saved task head has "
            f"{head_outputs} outputs; restore the config.json saved with these weights"
        )
    wanted = 1 if task_kind == "regression" else (num_labels or config.num_labels)
    saved_kind = "regression" if config.num_labels == 1 or config.problem_type == "regression" else "classification"
    if config.num_labels != wanted or saved_kind != task_kind:
        raise NaspruneError(
            f"model {name_or_path} has a trained {saved_kind} head with {config.num_labels} label(s), but the task "
            f"is {task_kind} with {wanted}; use a model fine-tuned for this task, or the pre-trained encoder "
            "without a task head"
        )


def load_hf_model(
    name_or_path: str, task_kind: str = "classification", num_labels: int | None = None, **kwargs: Any
) -> nn.Module:
    """Load a HF task model from the hub or a local folder, from safetensors weights only.

    ``task_kind`` picks the head: ``classification`` (``num_labels`` >= 2; default: the saved
    head's, else 2), ``regression`` (one output), ``multiple_choice`` or ``causal_lm``
    (``AutoModelForCausalLM``; ``num_labels`` is ignored by both). A trained head that does not
    fit is refused; a bare encoder (or a decoder's LM checkpoint) gets a new head.
    Pickled weights (``pytorch_model.bin``) are never loaded: they can run code.
    """
    from safetensors import SafetensorError
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForMultipleChoice,
        AutoModelForSequenceClassification,
    )

    if task_kind not in TASK_KINDS:
        raise NaspruneError(f"unknown task kind {task_kind!r}; expected one of {', '.join(TASK_KINDS)}")
    if task_kind == "regression" and num_labels not in (None, 1):
        raise NaspruneError(f"a regression head has one output, not num_labels={num_labels}")
    if task_kind == "classification" and num_labels is not None and num_labels < 2:
        raise NaspruneError(
            f"classification needs num_labels >= 2, got {num_labels}; use task kind 'regression'"
        )
    folder = local_model_folder(str(name_or_path))
    try:
        config = AutoConfig.from_pretrained(name_or_path)
        head_outputs = _check_local_weights(folder) if folder is not None else None
        _check_saved_head(str(name_or_path), config, task_kind, num_labels, head_outputs)
        kwargs["use_safetensors"] = True
        if task_kind == "causal_lm":
            return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
        if task_kind == "multiple_choice":
            return AutoModelForMultipleChoice.from_pretrained(name_or_path, **kwargs)
        if task_kind == "regression":
            return AutoModelForSequenceClassification.from_pretrained(
                name_or_path, num_labels=1, problem_type="regression", **kwargs
            )
        if num_labels is None:
            num_labels = config.num_labels if has_task_head(config) else 2
        return AutoModelForSequenceClassification.from_pretrained(
            name_or_path, num_labels=num_labels, **kwargs
        )
    except OSError as err:
        raise NaspruneError(
            f"could not load model {name_or_path!r}: not a local model folder with model.safetensors, and the "
            f"HuggingFace hub could not provide it (offline or unknown name?). Details: {err}"
        ) from err
    except ValueError as err:
        # Raised for folders without a usable config.json and for architectures HF does not know.
        raise NaspruneError(f"could not load model {name_or_path!r}: {err}") from err
    except SafetensorError as err:
        raise NaspruneError(f"could not load model {name_or_path!r}: its weights are corrupt ({err})") from err
    except RuntimeError as err:
        if "mismatched" not in str(err):
            raise
        # A tensor whose shape differs from what config.json describes (the head is checked above).
        raise NaspruneError(
            f"could not load model {name_or_path!r}: its weights do not fit its config.json "
            "(was config.json edited?); restore the config.json saved with these weights"
        ) from err
