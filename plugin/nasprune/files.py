"""Atomic files and folders: readers never see half of one, a crash leaves the old one intact.

A file is written to a temporary file in the target's folder, flushed to disk and renamed over
the target (:func:`write_atomic` and its CSV, text, JSON and figure forms). A folder (a
checkpoint, an exported model) is filled under a temporary name and then swapped into place by
:func:`replace_folder`.

This module is imported by light modules (results, comparisons, the standard-NAS journal): it
imports numpy only, never pandas, matplotlib or torch. Tables and figures are passed in and
written through their own ``to_csv`` / ``savefig``.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np


def write_atomic(path: str | os.PathLike, write: Callable[[Any], None], binary: bool = False) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it into place.

    The handle is a text handle (UTF-8, no newline translation) unless ``binary``. The folder is
    created if needed; on any error the temporary file is removed and the old ``path`` stays.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        text_options = {} if binary else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(handle, "wb" if binary else "w", **text_options) as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return path


def write_csv_atomic(df: Any, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame ``df`` as CSV (without the index) atomically."""
    return write_atomic(path, lambda out: df.to_csv(out, index=False))


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` atomically."""
    return write_atomic(path, lambda out: out.write(text))


def save_figure_atomic(figure: Any, path: str | os.PathLike) -> Path:
    """Write a matplotlib ``Figure`` as PNG atomically."""
    return write_atomic(path, lambda handle: figure.savefig(handle, format="png"), binary=True)


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays, tuples, sets and paths turned into JSON types.

    Non-finite floats become None: ``NaN`` is not valid JSON and strict readers reject it.
    Timestamps and durations (pandas' are ``datetime`` subclasses) become their text.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (datetime.datetime, datetime.timedelta)):
        return str(obj)
    return obj


def write_json_atomic(obj: Any, path: str | os.PathLike, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically, converting numpy types (see :func:`to_jsonable`)."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)
    return write_atomic(path, lambda out: out.write(text + "\n"))


def replace_folder(finished: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Rename the completely written folder ``finished`` to ``target``, replacing any old one.

    An existing ``target`` is first moved aside to ``.<name>.old-<pid>`` and removed only once
    the new folder is in place, so a crash in between leaves one of the two complete (see
    :func:`nasprune.checkpoint.clean_interrupted_saves`, which restores such a folder).
    """
    finished, target = Path(finished), Path(target)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    finished.rename(target)
    if old.exists():
        shutil.rmtree(old)
    return target
