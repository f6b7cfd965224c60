"""Hub tasks: ``datasets.load_dataset`` with the paper's split protocol, and one clear error
when the hub cannot be reached.

* The official training split is split 70/30 into train/validation with the dataset ``seed``.
* The official validation split is the test split (MNLI: ``validation_matched``; IMDB: ``test``).
* For the large tasks (SST-2, QNLI, MNLI, QQP, IMDB, SWAG) the validation part is subsampled to
  :data:`~nasprune.data.tasks.VALIDATION_CAP` examples without replacement.
"""

from __future__ import annotations

import socket

import datasets

from nasprune.data.columns import normalise
from nasprune.data.splits import split_train_validation, subsample
from nasprune.data.tasks import VALIDATION_CAP, TaskSpec
from nasprune.errors import NaspruneError


def _network_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the hub cannot be reached", from whichever libraries exist."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError, socket.gaierror]
    # Optional libraries, imported here: each one present adds its own connection errors.
    try:
        from huggingface_hub import errors as hub_errors

        types += [hub_errors.OfflineModeIsEnabled, hub_errors.LocalEntryNotFoundError]
    except (ImportError, AttributeError):
        pass
    try:
        import httpx

        types.append(httpx.TransportError)
    except ImportError:
        pass
    try:
        import requests

        types += [requests.exceptions.ConnectionError, requests.exceptions.Timeout]
    except ImportError:
        pass
    return tuple(types)


def _is_network_error(error: BaseException) -> bool:
    """Whether ``error`` or anything in its cause/context chain is a connection problem."""
    network_types, seen = _network_error_types(), set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, network_types):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _offline_message(spec: TaskSpec, error: BaseException) -> str:
    where = spec.hub_path + (f" ({spec.hub_config})" if spec.hub_config else "")
    return (
        f"Could not load task {spec.name!r} from the Hugging Face Hub ({where}): {error}\n"
        "The hub seems unreachable from this machine. Alternatives that work offline:\n"
        "  * the offline task 'rotten_tomatoes' (e.g. --task rotten_tomatoes), or\n"
        "  * your own files: --train-file PATH [--validation-file PATH] [--test-file PATH] "
        "(CSV, TSV, JSON or JSONL) with --text-column NAME [--text-pair-column NAME] "
        "--label-column NAME."
    )


def _load_hub(spec: TaskSpec) -> datasets.DatasetDict:
    """``datasets.load_dataset`` for a hub task, with one clear error when offline."""
    args = (spec.hub_path,) if spec.hub_config is None else (spec.hub_path, spec.hub_config)
    try:
        # Looked up on the module at call time, so tests can monkeypatch it.
        return datasets.load_dataset(*args)
    except Exception as error:  # noqa: BLE001 - classified below, re-raised when not network
        if _is_network_error(error):
            raise NaspruneError(_offline_message(spec, error)) from error
        raise


def hub_splits(spec: TaskSpec, seed: int) -> dict[str, datasets.Dataset]:
    """Paper protocol: 70/30 of official train, official validation (or test) as test."""
    raw = _load_hub(spec)
    train, validation = split_train_validation(normalise(raw["train"], spec), seed)
    if spec.subsample_validation:
        validation = subsample(validation, VALIDATION_CAP, seed)
    return {"train": train, "validation": validation,
            "test": normalise(raw[spec.test_split], spec)}
