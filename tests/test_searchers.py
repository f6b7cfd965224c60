"""Searchers, the method registry and the ask/tell loop, on synthetic two-objective problems."""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import pytest
from syne_tune.backend.trial_status import Trial
from syne_tune.config_space import (
    Domain,
    FiniteRange,
    choice,
    finrange,
    lograndint,
    loguniform,
    ordinal,
    randint,
    uniform,
)
from syne_tune.optimizer.schedulers.searchers.searcher import BaseSearcher
from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

from nasprune.analysis import hypervolume
from nasprune.errors import NaspruneError
from nasprune.search import (
    METHODS,
    NSGA2,
    ConfigEncoder,
    LocalSearch,
    ParetoArchive,
    make_scheduler,
    run_ask_tell,
)
from nasprune.search.local_search import ArchiveEntry
from nasprune.spaces import get_search_space
from nasprune.subnet import ModelShape

TINY = ModelShape(num_layers=4, num_heads=4, head_dim=8, hidden_size=32, intermediate_size=64)
BERT_BASE = ModelShape(num_layers=12, num_heads=12, head_dim=64, hidden_size=768, intermediate_size=3072)
METRICS = ["error", "size"]
LAYER_WEIGHTS = np.array([1.0, 0.7, 0.4, 0.2])
# Cheap EHVI settings: the point is that the method runs, not how well it optimises.
EHVI_KWARGS = dict(num_restarts=2, num_raw_samples=32, mc_samples=16)


# --- synthetic problems -----------------------------------------------------------------
def subnet_objectives(space):
    """Error falls with kept capacity (earlier layers count more), size is the kept fraction."""

    def evaluate(config):
        subnet = space.to_subnet(config)
        heads = subnet.heads_per_layer / TINY.num_heads
        units = subnet.units_per_layer / TINY.intermediate_size
        size = (heads.sum() + units.sum()) / (2 * TINY.num_layers)
        error = 1.0 - (LAYER_WEIGHTS * np.sqrt(heads * units)).sum() / LAYER_WEIGHTS.sum()
        return {"error": float(error), "size": float(size)}

    return evaluate


GENERIC_SPACE = {
    "x": randint(0, 20),
    "opt": choice(["a", "b", "c"]),
    "lr": uniform(0.0, 1.0),
    "wd": loguniform(1e-4, 1.0),
    "const": 7,
}
GENERIC_DESIGN = [
    {"x": 20, "opt": "c", "lr": 1.0, "wd": 1.0},
    {"x": 0, "opt": "a", "lr": 0.0, "wd": 1e-4},
    {"x": 10, "opt": "b", "lr": 0.5, "wd": 1e-2},
]


def generic_objectives(config):
    assert config["const"] == 7  # constants reach the evaluation
    penalty = {"a": 0.0, "b": 0.1, "c": 0.2}[config["opt"]]
    f1 = config["lr"] + 0.02 * config["x"] + penalty
    f2 = (1.0 - config["lr"]) ** 2 + 0.02 * (20 - config["x"]) + 0.05 * abs(math.log10(config["wd"]) + 2)
    return {"error": f1, "size": f2}


def in_generic_space(config):
    return all(
        domain.is_valid(config[name]) if isinstance(domain, Domain) else config[name] == domain
        for name, domain in GENERIC_SPACE.items()
    )


def strip_constants(config, config_space):
    return {k: v for k, v in config.items() if isinstance(config_space.get(k), Domain)}


def run(method, space_name="small", seed=0, num_samples=12, **kwargs):
    space = get_search_space(space_name, TINY)
    scheduler = make_scheduler(
        method, space.config_space, METRICS, space.initial_design(), seed,
        searcher_kwargs=EHVI_KWARGS if method == "ehvi" else None, **kwargs,
    )
    return space, run_ask_tell(scheduler, subnet_objectives(space), num_samples, progress=False)


def configs_of(records):
    return [r["config"] for r in records]


def front_hypervolume(records):
    points = np.array([[r["metrics"]["error"], r["metrics"]["size"]] for r in records])
    return hypervolume(points, (1.0, 1.0))


# --- every method -----------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_every_method_starts_from_the_initial_design_on_a_nasprune_space(method):
    space, records = run(method, num_samples=5 if method == "ehvi" else 12)
    design = space.initial_design()
    assert len(design) == 3
    assert configs_of(records)[:3] == design  # largest, smallest, midpoint, in that order
    for record in records:
        space.config_to_vector(record["config"])  # raises if outside the space
        assert set(record) >= {"trial_id", "config", "metrics", "elapsed"}
    assert [r["trial_id"] for r in records] == list(range(len(records)))
    assert all(a["elapsed"] <= b["elapsed"] for a, b in zip(records, records[1:]))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_on_a_generic_syne_tune_space(method):
    scheduler = make_scheduler(
        method, GENERIC_SPACE, METRICS, GENERIC_DESIGN, random_seed=3,
        searcher_kwargs=EHVI_KWARGS if method == "ehvi" else None,
    )
    records = run_ask_tell(scheduler, generic_objectives, 5 if method == "ehvi" else 20, progress=False)
    assert [strip_constants(c, GENERIC_SPACE) for c in configs_of(records)[:3]] == GENERIC_DESIGN
    assert all(in_generic_space(c) for c in configs_of(records))


@pytest.mark.parametrize("method", ["random_search", "morea", "local_search", "nsga2"])
def test_same_seed_same_configs_other_seed_other_configs(method):
    first = configs_of(run(method, "medium", seed=0, num_samples=30)[1])
    again = configs_of(run(method, "medium", seed=0, num_samples=30)[1])
    other = configs_of(run(method, "medium", seed=1, num_samples=30)[1])
    assert first == again
    assert first[3:] != other[3:]


@pytest.mark.parametrize("method", ["random_search", "local_search", "nsga2"])
def test_our_searchers_avoid_repeating_configs(method):
    _, records = run(method, "medium", num_samples=40)
    assert not any(r["cached"] for r in records)


# --- the registry -----------------------------------------------------------------------
def test_unknown_method_lists_the_methods():
    with pytest.raises(NaspruneError, match="nsga2.*ehvi|random_search"):
        make_scheduler("bayes", GENERIC_SPACE, METRICS, [], 0)


def test_ehvi_refuses_huge_spaces():
    space = get_search_space("large", TINY)  # 272 bits would still be allowed ...
    make_scheduler("ehvi", space.config_space, METRICS, space.initial_design(), 0)
    huge = {f"b{i}": randint(0, 1) for i in range(1001)}  # ... a thousand and one are not
    with pytest.raises(NaspruneError, match="local_search"):
        make_scheduler("ehvi", huge, METRICS, [], 0)


def test_ehvi_without_botorch_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "botorch", None)  # makes ``import botorch`` fail
    with pytest.raises(NaspruneError, match=r"pip install 'nasprune\[ehvi\]'"):
        make_scheduler("ehvi", GENERIC_SPACE, METRICS, [], 0)


def test_searchers_plug_into_a_plain_syne_tune_scheduler():
    space = get_search_space("small", TINY)
    for searcher in (
        NSGA2(space.config_space, points_to_evaluate=space.initial_design(), random_seed=0),
        LocalSearch(space.config_space, points_to_evaluate=space.initial_design(), random_seed=0),
    ):
        scheduler = SingleFidelityScheduler(space.config_space, metrics=METRICS, do_minimize=True, searcher=searcher)
        records = run_ask_tell(scheduler, subnet_objectives(space), 15, progress=False)
        assert configs_of(records)[:3] == space.initial_design()


# --- the encoder ------------------------------------------------------------------------
def test_encoder_round_trips_every_domain_kind():
    config_space = dict(
        GENERIC_SPACE,
        n=lograndint(1, 100),
        pow2=ordinal([1, 2, 4, 8]),
        word=ordinal(["low", "mid", "high"]),
        frac=finrange(0.1, 0.5, 5),
    )
    encoder = ConfigEncoder(config_space)
    assert encoder.num_variables == len(config_space) - 1 and not encoder.is_binary
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = encoder.sample(rng)
        config = encoder.decode(x)
        assert config["const"] == 7 and isinstance(config["x"], int) and isinstance(config["n"], int)
        for name, domain in config_space.items():
            if isinstance(domain, FiniteRange):  # Syne Tune's FiniteRange has no is_valid
                assert config[name] in domain.values
            elif isinstance(domain, Domain):
                assert domain.is_valid(config[name]), (name, config[name])
        np.testing.assert_array_equal(encoder.encode(config), x)
        mutant = encoder.mutate_one(x, rng)
        assert np.count_nonzero(mutant != x) == 1
        assert encoder.decode(mutant) != config
    with pytest.raises(NaspruneError, match="opt"):
        encoder.encode(dict(config, opt="z"))
    with pytest.raises(NaspruneError, match="x"):
        encoder.encode(dict(config, x=21))
    with pytest.raises(NaspruneError, match="misses"):
        encoder.encode({"x": 1})


def test_encoder_matches_the_nasprune_index_vectors():
    for name in ("small", "small_pow2", "medium", "layer", "large"):
        space = get_search_space(name, TINY)
        encoder = ConfigEncoder(space.config_space)
        assert encoder.is_binary == (name in ("layer", "large"))
        for config in space.initial_design():
            np.testing.assert_array_equal(
                encoder.encode(config) - encoder.lower, space.config_to_vector(config) - space.lower
            )
            assert encoder.decode(encoder.encode(config)) == config


def test_large_space_of_bert_base_is_fast():
    space = get_search_space("large", BERT_BASE)
    assert space.num_variables == 37_008
    start = time.perf_counter()
    encoder = ConfigEncoder(space.config_space)
    rng = np.random.default_rng(0)
    x = encoder.sample(rng)
    config = encoder.decode(x)
    np.testing.assert_array_equal(encoder.encode(config), x)
    encoder.mutate_one(x, rng)
    assert time.perf_counter() - start < 1.0  # milliseconds in practice

    evaluate_size = lambda c: float(space.config_to_vector(c).mean())  # noqa: E731
    for cls in (NSGA2, LocalSearch):
        start = time.perf_counter()
        searcher = cls(space.config_space, points_to_evaluate=space.initial_design(), random_seed=0)
        for trial_id in range(15):
            config = searcher.suggest()
            size = evaluate_size(config)
            searcher.on_trial_complete(trial_id, config, [1.0 - size**0.5, size])
        assert time.perf_counter() - start < 5.0, cls.__name__  # about 0.2 s here


# --- NSGA-II ----------------------------------------------------------------------------
def test_nsga2_is_asynchronous_and_survives_errors():
    space = get_search_space("medium", TINY)
    evaluate = subnet_objectives(space)
    searcher = NSGA2(space.config_space, points_to_evaluate=space.initial_design(), population_size=4, random_seed=0)
    scheduler = SingleFidelityScheduler(space.config_space, metrics=METRICS, do_minimize=True, searcher=searcher)

    # Several suggestions before any result: the design, then random configs.
    trials = [Trial(i, scheduler.suggest().config, None) for i in range(6)]
    assert [t.config for t in trials[:3]] == space.initial_design()
    # Results arrive out of order; one trial fails.
    scheduler.on_trial_error(trials[4])
    for trial in (trials[5], trials[1], trials[3]):
        scheduler.on_trial_complete(trial, evaluate(trial.config))
    assert searcher.num_pending == 2 and searcher.num_completed == 3
    # Still pending: 0 and 2. More suggestions while they run, then they complete.
    more = [Trial(i, scheduler.suggest().config, None) for i in range(6, 12)]
    for trial in (trials[2], more[3], trials[0], more[0], more[5]):
        scheduler.on_trial_complete(trial, evaluate(trial.config))
    scheduler.on_trial_error(more[1])
    assert len(searcher.population) == 4
    for trial in trials + more + [Trial(12, scheduler.suggest().config, None)]:
        space.config_to_vector(trial.config)  # every suggestion lies inside the space
    keys = [searcher.encoder.key(searcher.encoder.encode(t.config)) for t in trials + more]
    assert len(set(keys)) == len(keys)  # nothing suggested twice


def test_nsga2_suggests_random_configs_before_any_result():
    space = get_search_space("small", TINY)
    searcher = NSGA2(space.config_space, random_seed=0)
    configs = [searcher.suggest() for _ in range(25)]  # far more than the population
    for config in configs:
        space.config_to_vector(config)
    assert len({tuple(c.values()) for c in configs}) == len(configs)


def test_nsga2_same_results_same_suggestions_in_any_order():
    space = get_search_space("medium", TINY)
    evaluate = subnet_objectives(space)

    def trace(seed):
        searcher = NSGA2(space.config_space, points_to_evaluate=space.initial_design(), random_seed=seed)
        pending = [searcher.suggest() for _ in range(4)]
        out = list(pending)
        for trial_id in range(40):
            config = pending.pop(1 if len(pending) > 1 else 0)  # complete out of order
            searcher.on_trial_complete(trial_id, config, list(evaluate(config).values()))
            pending.append(searcher.suggest())
            out.append(pending[-1])
        return out

    assert trace(5) == trace(5)
    assert trace(5) != trace(6)


def test_nsga2_beats_random_search_on_a_toy_problem():
    def mean_hypervolume(method):
        return np.mean([front_hypervolume(run(method, "large", seed, num_samples=150)[1]) for seed in range(3)])

    nsga2, random = mean_hypervolume("nsga2"), mean_hypervolume("random_search")
    assert nsga2 > random + 0.05, (nsga2, random)  # about 0.51 against 0.39


def test_nsga2_population_is_ranked_by_rank_and_crowding():
    config_space = {"x": randint(0, 100)}
    searcher = NSGA2(config_space, population_size=3, random_seed=0)
    # Front: (0, 3), (1, 1), (2, 0.5), (3, 0); one dominated point (3, 3).
    for trial_id, (x, f) in enumerate([(0, (3, 3)), (1, (0, 3)), (2, (1, 1)), (3, (2, 0.5)), (4, (3, 0))]):
        searcher.on_trial_complete(trial_id, {"x": x}, list(f))
    kept = sorted(tuple(m.f) for m in searcher.population)
    # The dominated point leaves first; of the front the extremes (infinite crowding
    # distance) stay, and (1, 1) is less crowded than (2, 0.5).
    assert kept == [(0.0, 3.0), (1.0, 1.0), (3.0, 0.0)]


# --- local search -----------------------------------------------------------------------
def entry(f, key):
    return ArchiveEntry(x=np.zeros(1), f=np.asarray(f, dtype=float), key=key)


def test_archive_keeps_the_first_of_equal_costs_and_drops_dominated_points():
    archive = ParetoArchive()
    assert archive.add(entry((1, 1), b"a"))
    assert not archive.add(entry((1, 1), b"b"))  # equal cost: the first stays
    assert [e.key for e in archive.entries] == [b"a"]
    assert not archive.add(entry((1, 2), b"c"))  # dominated
    assert archive.add(entry((0.5, 2), b"d"))  # a new trade-off
    assert archive.add(entry((0.5, 0.5), b"e"))  # dominates both
    assert [e.key for e in archive.entries] == [b"e"]


def test_local_search_archive_is_always_a_clean_front():
    rng = np.random.default_rng(0)
    space = get_search_space("medium", TINY)
    searcher = LocalSearch(space.config_space, points_to_evaluate=space.initial_design(), random_seed=0)
    for trial_id in range(200):
        config = searcher.suggest()
        # Coarse costs make ties and exact duplicates frequent.
        searcher.on_trial_complete(trial_id, config, rng.integers(0, 6, size=2).astype(float).tolist())
        F = searcher.archive.costs
        for i, f in enumerate(F):
            others = np.delete(F, i, axis=0)
            assert not np.any(np.all(others <= f, axis=1)), "dominated or duplicate cost in archive"


def test_local_search_mutates_one_variable_of_an_archive_member():
    space = get_search_space("medium", TINY)
    evaluate = subnet_objectives(space)
    searcher = LocalSearch(space.config_space, points_to_evaluate=space.initial_design(), random_seed=0)
    for trial_id in range(30):
        config = searcher.suggest()
        if trial_id >= 3:
            x = searcher.encoder.encode(config)
            distances = [np.count_nonzero(e.x != x) for e in searcher.archive.entries]
            assert min(distances) == 1
        searcher.on_trial_complete(trial_id, config, list(evaluate(config).values()))


# --- the loop ---------------------------------------------------------------------------
class _Countdown(BaseSearcher):
    """Suggests a fixed config a few times, then nothing."""

    def __init__(self, config_space, remaining):
        super().__init__(config_space, random_seed=0)
        self.remaining = remaining

    def suggest(self, **kwargs):
        self.remaining -= 1
        return {"x": 1} if self.remaining >= 0 else None


def test_loop_stops_when_the_scheduler_runs_dry_and_caches_repeats():
    calls = []

    def evaluate(config):
        calls.append(config)
        return {"error": 0.5, "size": 0.1}

    scheduler = SingleFidelityScheduler({"x": randint(0, 3)}, metrics=METRICS, searcher=_Countdown({"x": randint(0, 3)}, 3))
    records = run_ask_tell(scheduler, evaluate, 10, progress=False)
    assert len(records) == 3 and len(calls) == 1  # evaluated once, told three times
    assert [r["cached"] for r in records] == [False, True, True]
    assert all(r["metrics"] == {"error": 0.5, "size": 0.1} for r in records)


def test_loop_respects_the_time_budget_and_checks_metrics():
    space = get_search_space("small", TINY)
    scheduler = make_scheduler("random_search", space.config_space, METRICS, space.initial_design(), 0)

    def slow(config):
        time.sleep(0.05)
        return subnet_objectives(space)(config)

    records = run_ask_tell(scheduler, slow, 1000, max_time=0.2, progress=False)
    assert 1 <= len(records) <= 6
    with pytest.raises(NaspruneError, match="size"):
        run_ask_tell(scheduler, lambda c: {"error": 0.1}, 3, progress=False)
