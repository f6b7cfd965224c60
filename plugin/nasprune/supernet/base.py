"""The super-network: a fine-tuned HF model whose forward runs any selected sub-network.

Family specifics (where the encoder lives, which HF classes are supported, how the task head
turns the sequence output into logits) sit in small :class:`FamilyAdapter` subclasses, one file
per family in this package, registered with :func:`register_adapter`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from nasprune.errors import NaspruneError
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet.encoder import MODES, LayerModules, SubnetEncoder, compile_plan

TASK_KINDS = ("classification", "regression", "multiple_choice")

_ADAPTERS: dict[str, "FamilyAdapter"] = {}


class FamilyAdapter:
    """What differs between BERT-like families. The defaults follow BERT's module names."""

    #: HF ``config.model_type`` values this adapter handles.
    model_types: tuple[str, ...] = ()
    #: Attribute of the task model that holds the base encoder model (``model.bert``).
    base_attr: str = ""

    def sequence_classification_classes(self) -> tuple[type, ...]:
        """HF classes with a sequence classification / regression head."""
        raise NotImplementedError

    def multiple_choice_classes(self) -> tuple[type, ...]:
        """HF classes with a multiple-choice head."""
        raise NotImplementedError

    def head_logits(self, model: nn.Module, sequence_output: torch.Tensor, task_kind: str) -> torch.Tensor:
        """Logits from the last hidden states ``[N, T, d]``; ``[N, 1]`` per choice for multiple choice."""
        raise NotImplementedError

    # --- shared structure of BERT-like models ---------------------------------------------
    def base_model(self, model: nn.Module) -> nn.Module:
        return getattr(model, self.base_attr)

    def embeddings(self, model: nn.Module) -> nn.Module:
        return self.base_model(model).embeddings

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return self.base_model(model).encoder.layer

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
        """``classification``, ``regression`` or ``multiple_choice``; raises for other heads."""
        if isinstance(model, self.multiple_choice_classes()):
            return "multiple_choice"
        if isinstance(model, self.sequence_classification_classes()):
            regression = model.config.num_labels == 1 or model.config.problem_type == "regression"
            return "regression" if regression else "classification"
        classes = self.sequence_classification_classes() + self.multiple_choice_classes()
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
    """A HF sequence-classification or multiple-choice model that runs selected sub-networks.

    The forward runs the full network unless a sub-network is active (see :meth:`select`).
    Parameters are those of the wrapped model, so training the super-network trains the model.
    """

    def __init__(self, hf_model: nn.Module, mode: str = "slice"):
        super().__init__()
        self.model = hf_model
        self._adapter = get_adapter(getattr(hf_model.config, "model_type", ""))
        self._task_kind = self._adapter.task_kind(hf_model)
        self._shape = ModelShape.from_config(hf_model.config)
        self._full = SubNetwork.full(self._shape)
        self._encoder = SubnetEncoder(
            [self._adapter.layer_modules(layer) for layer in self._adapter.layers(hf_model)], self._shape
        )
        self.mode = mode
        self._active: SubNetwork | None = None
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
        expected = (
            (self._shape.num_layers, self._shape.num_heads),
            (self._shape.num_layers, self._shape.intermediate_size),
        )
        if (subnet.head_mask.shape, subnet.unit_mask.shape) != expected:
            raise NaspruneError(
                f"sub-network masks {subnet.head_mask.shape} / {subnet.unit_mask.shape} do not fit "
                f"this model: expected head mask {expected[0]} and unit mask {expected[1]}"
            )

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

    def _current_plan(self, device: torch.device, dtype: torch.dtype) -> list:
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
        hidden = self._adapter.embeddings(self.model)(input_ids=flat_ids, token_type_ids=flat_types)
        hidden = hidden.view(*lead, length, hidden.shape[-1])
        if attention_mask is None:
            return hidden, None
        keep = attention_mask.to(device=hidden.device, dtype=hidden.dtype)
        ext_mask = (1.0 - keep) * torch.finfo(hidden.dtype).min
        return hidden, ext_mask.view(*lead, 1, 1, length)

    def encode(self, hidden: torch.Tensor, ext_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Run the encoder layers of the active sub-network on ``[N, T, d]`` embeddings."""
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
        logits = self._adapter.head_logits(self.model, sequence_output, self._task_kind)
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
        """Logits ``[B, num_labels]`` (``[B, C]`` for multiple choice) of the active sub-network.

        ``labels`` is accepted so a whole batch dict can be passed, and ignored: callers compute
        their own loss (cross-entropy, distillation, ...).
        """
        hidden, ext_mask = self.embed(input_ids, attention_mask, token_type_ids)
        return self.forward_from_embeddings(hidden, ext_mask)


def load_hf_model(
    name_or_path: str, task_kind: str = "classification", num_labels: int | None = None, **kwargs: Any
) -> nn.Module:
    """Load a HF task model from the hub or a local folder.

    ``task_kind`` picks the head: ``classification`` (``num_labels`` >= 2, default 2),
    ``regression`` (one output) or ``multiple_choice`` (``num_labels`` is ignored).
    """
    from transformers import AutoModelForMultipleChoice, AutoModelForSequenceClassification

    if task_kind not in TASK_KINDS:
        raise NaspruneError(f"unknown task kind {task_kind!r}; expected one of {', '.join(TASK_KINDS)}")
    try:
        if task_kind == "multiple_choice":
            return AutoModelForMultipleChoice.from_pretrained(name_or_path, **kwargs)
        if task_kind == "regression":
            if num_labels not in (None, 1):
                raise NaspruneError(f"a regression head has one output, not num_labels={num_labels}")
            return AutoModelForSequenceClassification.from_pretrained(
                name_or_path, num_labels=1, problem_type="regression", **kwargs
            )
        num_labels = 2 if num_labels is None else num_labels
        if num_labels < 2:
            raise NaspruneError(
                f"classification needs num_labels >= 2, got {num_labels}; use task kind 'regression'"
            )
        return AutoModelForSequenceClassification.from_pretrained(
            name_or_path, num_labels=num_labels, **kwargs
        )
    except OSError as err:
        raise NaspruneError(
            f"could not load model {name_or_path!r}: not a local model folder, and the HuggingFace hub "
            f"could not provide it (offline or unknown name?). Details: {err}"
        ) from err
    except ValueError as err:
        # Raised for folders without a usable config.json and for architectures HF does not know.
        raise NaspruneError(f"could not load model {name_or_path!r}: {err}") from err
