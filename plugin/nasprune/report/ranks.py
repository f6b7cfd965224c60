"""Ranks of methods over instances, with bootstrap confidence intervals.

An *instance* is a (task, data seed, seed) triple: the data seed fixes the train/validation/test
split, the seed the training and search. Within an instance the methods present are ranked by final
hypervolume (1 = best, ties share the mean rank). A method's average rank is the mean over the
instances it appears in; its 95% confidence interval comes from a seeded bootstrap over instances.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

#: What makes one ranking instance: the same task on the same split, trained and searched with one seed.
INSTANCE_KEYS = ("task", "data_seed", "seed")


def instance_ranks(scores: pd.DataFrame, higher_is_better: bool = True) -> pd.DataFrame:
    """Ranks of the methods within every instance.

    :param scores: columns ``task``, ``data_seed`` (optional, 0 when absent), ``seed``, ``method``,
        ``score`` (one row per run)
    :return: the same rows with a ``rank`` column (1 = best; ties share their mean rank)
    """
    # scipy.stats is slow to import, and every ``nasprune`` command imports this module (via the CLI).
    from scipy.stats import rankdata

    def rank(group: pd.DataFrame) -> pd.Series:
        values = -group["score"].to_numpy(float) if higher_is_better else group["score"].to_numpy(float)
        return pd.Series(rankdata(values, method="average"), index=group.index)

    ranked = scores.copy()
    if "data_seed" not in ranked:
        ranked["data_seed"] = 0
    ranked["rank"] = np.nan
    for _, group in ranked.groupby(list(INSTANCE_KEYS), sort=True):
        ranked.loc[group.index, "rank"] = rank(group)
    return ranked


def average_ranks(
    ranked: pd.DataFrame, num_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Mean rank per method with a bootstrap confidence interval over instances.

    Each bootstrap replicate draws as many instances as there are, with replacement,
    and averages every method's ranks over the drawn instances it appears in.
    :return: one row per method (sorted by mean rank): ``method``, ``mean_rank``, ``ci_low``,
        ``ci_high``, ``instances``
    """
    if "data_seed" not in ranked:
        ranked = ranked.assign(data_seed=0)
    keys = [ranked[k] for k in INSTANCE_KEYS]
    instances = sorted(set(zip(*keys)))
    methods = sorted(ranked["method"].unique())
    matrix = np.full((len(instances), len(methods)), np.nan)
    position = {inst: i for i, inst in enumerate(instances)}
    column = {m: j for j, m in enumerate(methods)}
    for instance, method, rank in zip(zip(*keys), ranked["method"], ranked["rank"]):
        matrix[position[instance], column[method]] = rank
    mean = np.nanmean(matrix, axis=0)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(instances), size=(num_bootstrap, len(instances)))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        # numpy's 'mean of empty slice' for a method absent from every drawn instance: its CI is NaN.
        warnings.simplefilter("ignore", RuntimeWarning)
        boot = np.vstack([np.nanmean(matrix[d], axis=0) for d in draws]) if num_bootstrap else mean[None, :]
    alpha = (1 - confidence) / 2
    low = np.nanquantile(boot, alpha, axis=0)
    high = np.nanquantile(boot, 1 - alpha, axis=0)
    table = pd.DataFrame(
        {
            "method": methods,
            "mean_rank": mean,
            "ci_low": low,
            "ci_high": high,
            "instances": (~np.isnan(matrix)).sum(axis=0),
        }
    )
    return table.sort_values(["mean_rank", "method"], kind="stable").reset_index(drop=True)
