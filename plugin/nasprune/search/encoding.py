"""Config <-> vector encoding for generic Syne Tune config spaces, and the base of our searchers.

Evolutionary operators (mutation, crossover) work on numeric vectors, while Syne Tune passes
configs as dicts. :class:`ConfigEncoder` analyses a config space *once* and then converts in
both directions with a handful of vectorised numpy operations, so that a space with tens of
thousands of variables (the ``large`` nasprune space has 37,008 bits for BERT-base) encodes,
decodes, samples and mutates in milliseconds.

Every non-constant hyperparameter becomes one coordinate of the *internal* vector:

=============================================== ======================================= ========
domain                                          internal coordinate                     integral
=============================================== ======================================= ========
``randint``                                     the value                               yes
``choice``, ``ordinal``, ``logordinal``,        the index of the value in the domain    yes
``finrange``, ``logfinrange``
``uniform``                                     the value                               no
``loguniform``                                  ``log(value)``                          no
``reverseloguniform``                           ``-log(1 - value)``                     no
``lograndint``, quantised domains               as the float domains; decoding rounds   no
=============================================== ======================================= ========

Log coordinates make operators and random sampling behave as they do on the log scale the
user asked for. Constants (non-:class:`~syne_tune.config_space.Domain` entries) are passed
through: decoded configs contain them, encoding ignores them (Syne Tune strips them before it
calls a searcher).

:class:`VectorSearcher` is the base class of nasprune's searchers: a seeded
:class:`numpy.random.Generator`, the encoder, and the bookkeeping of which configs were
already suggested, so that searchers avoid proposing a config twice.
"""

from __future__ import annotations

import hashlib
import logging
import operator
from collections import Counter
from typing import Any

import numpy as np
from syne_tune.config_space import (
    Categorical,
    Domain,
    FiniteRange,
    Float,
    Integer,
    Quantized,
    is_log_space,
    is_reverse_log_space,
)
from syne_tune.optimizer.schedulers.searchers.searcher import BaseSearcher

from nasprune.errors import NaspruneError

logger = logging.getLogger(__name__)

Config = dict[str, Any]

# How an internal coordinate maps back to a value.
_INTEGER = 0  # randint: the coordinate is the value
_FLOAT = 1  # float-like: transform, optional rounding / quantisation
_CATEGORY = 2  # finite set: the coordinate indexes a list of values

# Transforms of float-like coordinates.
_LINEAR = 0
_LOG = 1
_REVERSE_LOG = 2


class ConfigEncoder:
    """Maps configs of ``config_space`` to float vectors and back, built once per space.

    :param config_space: A Syne Tune config space: hyperparameter name to a
        :class:`~syne_tune.config_space.Domain` or a constant.

    Attributes ``lower`` and ``upper`` are the bounds of the internal coordinates, ``integral``
    marks coordinates that only take integer values, ``free`` marks coordinates with more than
    one value (the only ones worth mutating).
    """

    def __init__(self, config_space: dict[str, Any]):
        self.config_space = config_space
        self.constants = {k: v for k, v in config_space.items() if not isinstance(v, Domain)}
        self.names = [k for k, v in config_space.items() if isinstance(v, Domain)]
        n = len(self.names)
        self.lower = np.zeros(n)
        self.upper = np.zeros(n)
        self.integral = np.zeros(n, dtype=bool)
        kind = np.zeros(n, dtype=np.int8)
        transform = np.zeros(n, dtype=np.int8)
        cast_int = np.zeros(n, dtype=bool)
        quantum = np.zeros(n)
        value_lower = np.zeros(n)
        value_upper = np.zeros(n)
        self._categories: dict[int, list[Any]] = {}
        self._category_index: dict[int, dict[Any, int]] = {}

        # The large space shares one domain object among all variables: analyse each distinct
        # domain once, then fill the attribute arrays by index.
        by_domain: dict[int, list[int]] = {}
        domains: dict[int, Domain] = {}
        for i, name in enumerate(self.names):
            domain = config_space[name]
            by_domain.setdefault(id(domain), []).append(i)
            domains[id(domain)] = domain
        for key, where in by_domain.items():
            spec = self._analyse(domains[key], self.names[where[0]])
            idx = np.asarray(where)
            self.lower[idx], self.upper[idx] = spec["lower"], spec["upper"]
            self.integral[idx] = spec["integral"]
            kind[idx], transform[idx] = spec["kind"], spec["transform"]
            cast_int[idx], quantum[idx] = spec["cast_int"], spec["quantum"]
            value_lower[idx], value_upper[idx] = spec["value_lower"], spec["value_upper"]
            if spec["kind"] == _CATEGORY:
                for i in where:
                    self._categories[i] = spec["categories"]
                    self._category_index[i] = spec["category_index"]

        self.free = self.upper > self.lower
        self._kind = kind
        self._integer_idx = np.flatnonzero(kind == _INTEGER)
        self._float_idx = np.flatnonzero(kind == _FLOAT)
        self._category_idx = np.flatnonzero(kind == _CATEGORY)
        self._transform = transform[self._float_idx]
        self._cast_int = cast_int[self._float_idx]
        self._quantum = quantum[self._float_idx]
        self._value_lower = value_lower[self._float_idx]
        self._value_upper = value_upper[self._float_idx]
        # Integer coordinates whose *sampling* is log-uniform are float-like (see module doc),
        # so sampling integral coordinates is always uniform over their values.
        self._all_integer = self._integer_idx.size == n
        self._names_getter = operator.itemgetter(*self.names) if n else None

    # --- analysis -----------------------------------------------------------------------
    @staticmethod
    def _analyse(domain: Domain, name: str) -> dict[str, Any]:
        spec: dict[str, Any] = dict(
            integral=False, kind=_FLOAT, transform=_LINEAR, cast_int=False, quantum=0.0,
            value_lower=0.0, value_upper=0.0,
        )
        if isinstance(domain, (Categorical, FiniteRange)):
            # Ordinal and OrdinalNearestNeighbor are Categoricals: ordered ones keep their
            # order in the index, which is what distance-based operators need.
            categories = list(domain.values if isinstance(domain, FiniteRange) else domain.categories)
            spec.update(
                kind=_CATEGORY, integral=True, lower=0.0, upper=float(len(categories) - 1),
                categories=categories,
                category_index={_hashable(c): j for j, c in reversed(list(enumerate(categories)))},
            )
            return spec
        if not isinstance(domain, (Integer, Float)):
            raise NaspruneError(f"hyperparameter '{name}': unsupported domain {domain!r}")
        sampler = domain.get_sampler()
        if isinstance(sampler, Quantized):
            spec["quantum"] = float(sampler.q)
            sampler = sampler.get_sampler()
        log = isinstance(sampler, (Integer._LogUniform, Float._LogUniform)) or is_log_space(domain)
        lower, upper = float(domain.lower), float(domain.upper)
        if not (np.isfinite(lower) and np.isfinite(upper)):
            raise NaspruneError(f"hyperparameter '{name}': bounds must be finite, got {domain!r}")
        if isinstance(domain, Integer) and not log and spec["quantum"] == 0.0:
            spec.update(kind=_INTEGER, integral=True, lower=lower, upper=upper)
            return spec
        spec.update(value_lower=lower, value_upper=upper, cast_int=isinstance(domain, Integer))
        if log:
            spec.update(transform=_LOG, lower=np.log(lower), upper=np.log(upper))
        elif is_reverse_log_space(domain):
            spec.update(transform=_REVERSE_LOG, lower=-np.log1p(-lower), upper=-np.log1p(-upper))
        else:
            spec.update(lower=lower, upper=upper)
        return spec

    # --- sizes and properties -----------------------------------------------------------
    @property
    def num_variables(self) -> int:
        return len(self.names)

    @property
    def is_binary(self) -> bool:
        """True if every free coordinate is integral with exactly two values (bit operators apply)."""
        free = self.free
        return bool(
            free.any()
            and np.all(self.integral[free])
            and np.all(self.upper[free] - self.lower[free] == 1)
        )

    # --- config -> vector ---------------------------------------------------------------
    def encode(self, config: Config) -> np.ndarray:
        """The internal vector of ``config``.

        :raises NaspruneError: if ``config`` misses a hyperparameter or lies outside the space.
        """
        n = self.num_variables
        x = np.empty(n)
        if n == 0:
            return x
        try:
            values = self._names_getter(config)
        except KeyError:
            missing = [k for k in self.names if k not in config]
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise NaspruneError(f"config misses hyperparameters: {shown}") from None
        if n == 1:
            values = (values,)
        try:
            if self._all_integer:
                x[:] = np.asarray(values, dtype=float)  # the fast path of the large space
            else:
                for group in (self._integer_idx, self._float_idx):
                    if group.size:
                        x[group] = np.asarray([values[i] for i in group], dtype=float)
        except (TypeError, ValueError) as err:
            raise NaspruneError(
                f"config has a non-numeric value for a numeric hyperparameter: {err}"
            ) from None
        for i in self._category_idx:
            j = self._category_index[i].get(_hashable(values[i]))
            if j is None:
                j = self._nearest_category(i, values[i])
            x[i] = j
        if self._float_idx.size:
            x[self._float_idx] = self._to_internal(x[self._float_idx])
        bad = np.flatnonzero(~np.isfinite(x) | (x < self.lower - 1e-9) | (x > self.upper + 1e-9))
        if bad.size:
            name = self.names[int(bad[0])]
            raise NaspruneError(
                f"config is outside the space: {name}={config[name]!r} "
                f"is not in {self.config_space[name]!r}"
            )
        return x

    def _nearest_category(self, i: int, value: Any) -> int:
        # Syne Tune casts floats to the nearest category (round-off from strings): do the same.
        domain = self.config_space[self.names[i]]
        try:
            cast = domain.cast(value)
        except (AssertionError, TypeError, ValueError):
            cast = None
        j = self._category_index[i].get(_hashable(cast))
        if j is None:
            raise NaspruneError(
                f"config is outside the space: {self.names[i]}={value!r} "
                f"is not one of {self._categories[i]}"
            )
        return j

    def _to_internal(self, values: np.ndarray) -> np.ndarray:
        out = values.astype(float, copy=True)
        log = self._transform == _LOG
        rev = self._transform == _REVERSE_LOG
        with np.errstate(divide="ignore", invalid="ignore"):
            out[log] = np.log(values[log])
            out[rev] = -np.log1p(-values[rev])
        return out

    def _from_internal(self, coords: np.ndarray) -> np.ndarray:
        out = coords.astype(float, copy=True)
        log = self._transform == _LOG
        rev = self._transform == _REVERSE_LOG
        out[log] = np.exp(coords[log])
        out[rev] = -np.expm1(-coords[rev])
        quantised = self._quantum > 0
        out[quantised] = np.round(out[quantised] / self._quantum[quantised]) * self._quantum[quantised]
        out[self._cast_int] = np.rint(out[self._cast_int])
        return np.clip(out, self._value_lower, self._value_upper)

    # --- vector -> config ---------------------------------------------------------------
    def decode(self, x: np.ndarray) -> Config:
        """The config of an internal vector (rounded and clipped into the space), constants included."""
        x = np.clip(np.asarray(x, dtype=float), self.lower, self.upper)
        if self._all_integer:
            # ``tolist`` yields Python ints: configs stay JSON-friendly and hash consistently.
            config = dict(zip(self.names, np.rint(x).astype(np.int64).tolist()))
        else:
            values: list[Any] = [None] * self.num_variables
            integers = np.rint(x[self._integer_idx]).astype(np.int64)
            for i, v in zip(self._integer_idx.tolist(), integers.tolist()):
                values[i] = v
            if self._float_idx.size:
                floats = self._from_internal(x[self._float_idx])
                as_int = self._cast_int.tolist()
                for i, v, cast in zip(self._float_idx.tolist(), floats.tolist(), as_int):
                    values[i] = int(v) if cast else v
            for i in self._category_idx.tolist():
                values[i] = self._categories[i][int(np.rint(x[i]))]
            config = dict(zip(self.names, values))
        config.update(self.constants)
        return config

    # --- vectors ------------------------------------------------------------------------
    def round(self, x: np.ndarray) -> np.ndarray:
        """Clip into the box and round integral coordinates (what operators' children need)."""
        x = np.clip(np.asarray(x, dtype=float), self.lower, self.upper)
        x[self.integral] = np.rint(x[self.integral])
        return x

    def canonical(self, x: np.ndarray) -> np.ndarray:
        """The vector that encodes the same config as ``x`` does, exactly: ``encode(decode(x))``."""
        if self._float_idx.size == 0:
            return self.round(x)  # no float round-off possible: rounding is enough
        return self.encode(self.decode(x))

    def key(self, x: np.ndarray) -> bytes:
        """A short, exact key of a canonical vector (a digest keeps 37k-variable keys small)."""
        return hashlib.blake2b(np.ascontiguousarray(x, dtype=float).tobytes(), digest_size=16).digest()

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A random canonical vector: uniform over integral coordinates, uniform (in the
        internal, possibly log scale) over the others."""
        x = self.lower + rng.random(self.num_variables) * (self.upper - self.lower)
        integral = self.integral
        x[integral] = rng.integers(
            self.lower[integral].astype(np.int64), self.upper[integral].astype(np.int64) + 1
        )
        return self.canonical(x)

    def mutate_one(self, x: np.ndarray, rng: np.random.Generator, max_tries: int = 100) -> np.ndarray:
        """A copy of ``x`` with exactly one free coordinate set to a different random value.

        Integral coordinates take one of their other values uniformly; float-like ones a
        fresh uniform draw (on their internal scale), redrawn while it rounds to the old value.
        Returns ``x`` unchanged if the space has no free coordinate.
        """
        free = np.flatnonzero(self.free)
        child = np.array(x, dtype=float)
        if free.size == 0:
            return child
        j = int(free[rng.integers(free.size)])
        lo, hi = self.lower[j], self.upper[j]
        if self.integral[j]:
            new = int(rng.integers(int(lo), int(hi)))  # one of the hi - lo other values ...
            child[j] = new + 1 if new >= child[j] else new  # ... skipping the current one
            return child
        for _ in range(max_tries):
            child[j] = lo + rng.random() * (hi - lo)
            child = self.canonical(child)
            if child[j] != x[j]:
                break
        return child


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


class VectorSearcher(BaseSearcher):
    """Base of nasprune's Syne Tune searchers: an encoder, a seeded generator, no repeats.

    Subclasses implement :meth:`suggest` (returning :meth:`_next_initial_point` first) and
    :meth:`on_trial_complete`. Metrics arrive as a list, sign-adjusted by the scheduler so
    that lower is better for every objective.

    Pending bookkeeping: Syne Tune tells a searcher the trial id of a suggestion only when
    results come in. Like Syne Tune's own EHVI searcher we assume that trial ids count
    suggestions (0, 1, 2, ...), which is what ``Tuner`` and ``AskTellScheduler`` do, to find
    the config of a trial that failed before reporting anything.

    :param config_space: Syne Tune config space.
    :param points_to_evaluate: Configs to suggest first, in order.
    :param random_seed: Seed of the :class:`numpy.random.Generator` behind every random choice.
    :param max_retries: How often to redraw a candidate that was already suggested.
    """

    def __init__(
        self,
        config_space: dict[str, Any],
        points_to_evaluate: list[Config] | None = None,
        random_seed: int | None = None,
        max_retries: int = 20,
    ):
        super().__init__(config_space, points_to_evaluate=points_to_evaluate, random_seed=random_seed)
        self.encoder = ConfigEncoder(config_space)
        self.rng = np.random.default_rng(self.random_seed)
        self.max_retries = max_retries
        self._suggested: list[bytes] = []  # keys in suggestion order, i.e. by trial id
        self._trial_keys: dict[int, bytes] = {}  # trial ids whose config we were told
        self._pending: Counter[bytes] = Counter()
        self._evaluated: set[bytes] = set()
        self.num_completed = 0

    # --- suggestion helpers -------------------------------------------------------------
    def _next_initial_point(self) -> Config | None:
        """The next of ``points_to_evaluate``, registered as pending, or None."""
        point = self._next_points_to_evaluate()
        if point is None:
            return None
        x = self.encoder.encode(point)  # fails early, with a clear message, on a bad point
        config = dict(point)
        for name, value in self.encoder.constants.items():
            config.setdefault(name, value)
        self._register(self.encoder.key(x))
        return config

    def _is_new(self, key: bytes) -> bool:
        return key not in self._evaluated and key not in self._pending

    def _register(self, key: bytes) -> None:
        self._suggested.append(key)
        self._pending[key] += 1

    def _emit(self, x: np.ndarray) -> Config:
        """Register a canonical vector as pending and return its config."""
        self._register(self.encoder.key(x))
        return self.encoder.decode(x)

    def _sample_new(self) -> np.ndarray:
        """A random canonical vector not suggested before, if one is found within the retries."""
        x = self.encoder.sample(self.rng)
        for _ in range(self.max_retries):
            if self._is_new(self.encoder.key(x)):
                break
            x = self.encoder.sample(self.rng)
        return x

    @property
    def num_pending(self) -> int:
        return sum(self._pending.values())

    # --- Syne Tune callbacks ------------------------------------------------------------
    def on_trial_result(self, trial_id: int, config: Config, metrics: list[float]) -> None:
        # Single-fidelity searchers learn from final results only; remember the config so
        # that an error of this trial can be matched exactly.
        self._trial_keys[trial_id] = self.encoder.key(self.encoder.encode(config))

    def on_trial_error(self, trial_id: int) -> None:
        """Forget the pending trial, so that its config may be suggested again."""
        key = self._trial_keys.pop(trial_id, None)
        if key is None and 0 <= trial_id < len(self._suggested):
            key = self._suggested[trial_id]
        if key is not None and self._pending[key] > 0:
            self._pending[key] -= 1
            if not self._pending[key]:
                del self._pending[key]

    def _record_completion(self, trial_id: int, config: Config) -> tuple[np.ndarray, bytes]:
        """Shared part of :meth:`on_trial_complete`: encode, and move from pending to evaluated."""
        x = self.encoder.encode(config)
        key = self.encoder.key(x)
        self._trial_keys.pop(trial_id, None)
        if self._pending[key] > 0:
            self._pending[key] -= 1
        if not self._pending[key]:
            del self._pending[key]
        self._evaluated.add(key)
        self.num_completed += 1
        return x, key


class SeededRandomSearcher(VectorSearcher):
    """Multi-objective random search that honours its seed.

    Syne Tune's ``MultiObjectiveRandomSearcher`` (``searcher="random_search"`` with two or more
    metrics) samples from numpy's *global* generator and ignores ``random_seed``. This searcher
    returns ``points_to_evaluate`` first, then uniform random configs drawn from its own seeded
    generator, skipping configs already suggested when a new one is found within the retries.
    """

    def suggest(self, **kwargs) -> Config | None:
        point = self._next_initial_point()
        if point is not None:
            return point
        return self._emit(self._sample_new())

    def on_trial_complete(self, trial_id: int, config: Config, metrics: list[float]) -> None:
        self._record_completion(trial_id, config)
