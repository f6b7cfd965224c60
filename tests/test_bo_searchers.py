"""LSBO and RSBO: scalarised Bayesian optimisation on a toy two-objective problem (issue 13)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from syne_tune.backend.trial_status import Trial
from syne_tune.config_space import randint, uniform

from nasprune.analysis import hypervolume
from nasprune.errors import NaspruneError
from nasprune.search import make_scheduler, run_ask_tell
from nasprune.search.scalarised_bo import LSBO, RSBO, ScalarisedBO

# Four continuous variables; ZDT1 (Zitzler, Deb, Thiele 2000), its second objective scaled into [0, 1].
SPACE = {f"x{i}": uniform(0.0, 1.0) for i in range(4)}
METRICS = ["f1", "f2"]
# Cheap settings: a small candidate pool and few Monte Carlo samples keep a suggestion fast.
CHEAP = dict(num_candidates=128, num_mutants=64, mc_samples=32)
NUM_INITIAL = 5  # MIN_OBSERVATIONS: the random initial design of every run here
NUM_SAMPLES = 14


def zdt1(config):
    x = np.array([config[f"x{i}"] for i in range(4)])
    g = 1 + 9 * x[1:].mean()
    return {"f1": float(x[0]), "f2": float(g * (1 - np.sqrt(x[0] / g))) / 10}


def front_hypervolume(records):
    return hypervolume(np.array([[r["metrics"]["f1"], r["metrics"]["f2"]] for r in records]), (1.0, 1.0))


def run(method, seed=0, num_samples=NUM_SAMPLES, **kwargs):
    kwargs = {**CHEAP, **kwargs} if method in ("lsbo", "rsbo") else kwargs
    scheduler = make_scheduler(method, SPACE, METRICS, [], seed, searcher_kwargs=kwargs)
    return run_ask_tell(scheduler, zdt1, num_samples, progress=False)


@pytest.mark.parametrize("method", ["lsbo", "rsbo"])
def test_bo_beats_its_initial_design_and_random_search(method):
    records = run(method)
    random_records = run("random_search")
    # Same seed: the random initial design is the one random search starts with.
    assert [r["config"] for r in records[:NUM_INITIAL]] == [r["config"] for r in random_records[:NUM_INITIAL]]
    initial = front_hypervolume(records[:NUM_INITIAL])
    assert front_hypervolume(records) > initial + 0.05
    assert front_hypervolume(records) > front_hypervolume(random_records)


@pytest.mark.parametrize("searcher_class", [LSBO, RSBO])
def test_same_seed_same_suggestions_other_seed_others(searcher_class):
    def suggestions(seed):
        searcher = searcher_class(SPACE, random_seed=seed, min_observations=3, **CHEAP)
        configs = []
        for trial_id in range(6):
            config = searcher.suggest()
            configs.append(config)
            searcher.on_trial_complete(trial_id, config, list(zdt1(config).values()))
        return configs

    state = torch.random.get_rng_state()
    first = suggestions(0)
    assert torch.equal(torch.random.get_rng_state(), state)  # torch's global generator is left alone
    assert first == suggestions(0)
    assert first[3:] != suggestions(1)[3:]


def grid_searcher(searcher_class, seed=0):
    """A searcher over a space of 16 configs, with three model-based results to go on."""
    space = {"a": randint(0, 3), "b": randint(0, 3)}
    searcher = searcher_class(space, random_seed=seed, min_observations=3, **CHEAP)
    searcher.done = []
    for trial_id in range(3):
        config = searcher.suggest()
        searcher.on_trial_complete(trial_id, config, [config["a"] / 3, 1 - config["b"] / 3])
        searcher.done.append((config["a"], config["b"]))
    return searcher


@pytest.mark.parametrize("searcher_class", [LSBO, RSBO])
def test_no_config_twice_while_pending(searcher_class):
    searcher = grid_searcher(searcher_class)
    pending = [searcher.suggest() for _ in range(10)]  # no results: all of them stay pending
    keys = [(c["a"], c["b"]) for c in pending]
    assert len(set(keys)) == len(keys)
    assert searcher.num_pending == 10
    assert not set(searcher.done) & set(keys)  # nor one that finished


@pytest.mark.parametrize("searcher_class", [LSBO, RSBO])
def test_failed_trials_are_never_suggested_again(searcher_class):
    searcher = grid_searcher(searcher_class)
    failed = searcher.suggest()  # trial 3
    searcher.on_trial_error(3)
    nan = searcher.suggest()  # trial 4: reports NaN, a failure too
    searcher.on_trial_complete(4, nan, [float("nan"), 0.5])
    assert searcher.num_pending == 0
    later = []
    for trial_id in range(5, 16):  # the other 11 configs of the space
        config = searcher.suggest()
        later.append(config)
        searcher.on_trial_complete(trial_id, config, [config["a"] / 3, 1 - config["b"] / 3])
    assert failed not in later and nan not in later
    assert len(searcher._observed_f) == 3 + 11  # the failures are not in the model's data


def test_failed_trial_through_a_scheduler():
    scheduler = make_scheduler("rsbo", SPACE, METRICS, [], 0, searcher_kwargs=dict(CHEAP, min_observations=2))
    trials = []
    for trial_id in range(6):
        trial = Trial(trial_id=trial_id, config=scheduler.suggest().config, creation_time=None)
        trials.append(trial)
        if trial_id == 2:
            scheduler.on_trial_error(trial)
        else:
            scheduler.on_trial_complete(trial, zdt1(trial.config))
    assert scheduler.suggest() is not None


def test_scalarisations():
    F = np.array([[0.2, 0.6], [0.5, 0.5]])
    weights = np.array([0.25, 0.75])
    linear = ScalarisedBO(SPACE, scalarisation="linear").scalarise(F, weights)
    chebyshev = ScalarisedBO(SPACE, scalarisation="chebyshev", rho=0.05).scalarise(F, weights)
    np.testing.assert_allclose(linear, [0.05 + 0.45, 0.125 + 0.375])
    np.testing.assert_allclose(chebyshev, [0.45 + 0.05 * 0.5, 0.375 + 0.05 * 0.5])


def test_rsbo_draws_a_new_weighting_per_suggestion_and_lsbo_keeps_its_own():
    rsbo, lsbo = (cls(SPACE, random_seed=0, min_observations=3, **CHEAP) for cls in (RSBO, LSBO))
    lsbo_given = LSBO(SPACE, random_seed=0, weights=[3, 1], min_observations=3, **CHEAP)
    drawn = {id(s): [] for s in (rsbo, lsbo, lsbo_given)}
    for searcher in (rsbo, lsbo, lsbo_given):
        for trial_id in range(5):
            config = searcher.suggest()
            if searcher.last_weights is not None:
                drawn[id(searcher)].append(searcher.last_weights.copy())
            searcher.on_trial_complete(trial_id, config, list(zdt1(config).values()))
    rsbo_weights = drawn[id(rsbo)]
    assert len(rsbo_weights) == 2 and not np.allclose(rsbo_weights[0], rsbo_weights[1])
    assert all(np.isclose(w.sum(), 1) and np.all(w >= 0) for w in rsbo_weights)
    assert all(np.allclose(w, [0.5, 0.5]) for w in drawn[id(lsbo)])
    assert all(np.allclose(w, [0.75, 0.25]) for w in drawn[id(lsbo_given)])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(weights=[1, -1]), "non-negative"),
        (dict(weights="sometimes"), "equal"),
        (dict(objective_bounds=[(0, 1), (1, 1)]), "low < high"),
        (dict(objective_bounds="known"), "observed"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(NaspruneError, match=message):
        make_scheduler("lsbo", SPACE, METRICS, [], 0, searcher_kwargs=kwargs)


def test_observed_bounds_normalise_objectives_of_any_scale():
    searcher = LSBO(SPACE, random_seed=0, objective_bounds="observed", min_observations=3, **CHEAP)
    for trial_id in range(5):
        config = searcher.suggest()
        f = zdt1(config)
        searcher.on_trial_complete(trial_id, config, [1000 * f["f1"], f["f2"]])
    normalised = searcher._normalise(np.array(searcher._observed_f))
    assert normalised.min() == 0.0 and normalised.max() == 1.0


def test_without_botorch_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "botorch", None)  # makes ``import botorch`` fail
    with pytest.raises(NaspruneError, match=r"pip install 'nasprune\[bo\]'"):
        make_scheduler("rsbo", SPACE, METRICS, [], 0)


def test_a_failing_model_fit_falls_back_to_a_new_random_config(monkeypatch, caplog):
    import nasprune.search.scalarised_bo as scalarised_bo

    def fail(*args, **kwargs):
        raise RuntimeError("not positive definite")

    monkeypatch.setattr(scalarised_bo, "_log_expected_improvement", fail)
    searcher = grid_searcher(LSBO)
    config = searcher.suggest()
    assert (config["a"], config["b"]) not in searcher.done
    assert "model fit failed" in caplog.text
