"""Bayesian optimisation of a scalarised multi-objective problem, as Syne Tune searchers.

Two of the methods of Klein et al. (2024), which Syne Tune no longer ships:

- :class:`LSBO`, linear scalarisation: one fixed weighting ``sum_i w_i f_i`` of the objectives
  (equal weights unless given), optimised by Bayesian optimisation;
- :class:`RSBO`, random scalarisation as in ParEGO (Knowles 2006): a new weighting for every
  suggestion, drawn uniformly from the simplex, of the *augmented Chebyshev* scalarisation
  ``max_i w_i f_i + rho * sum_i w_i f_i`` (``rho = 0.05``, ParEGO's value). ParEGO draws its
  weights from a fixed grid on the simplex; we draw them from the continuous uniform
  distribution on it (a flat Dirichlet), which needs no grid size.

Each suggestion fits a Gaussian process (BoTorch's ``SingleTaskGP``, standardised outcomes) to
the scalarised objectives of every finished trial and picks, among a pool of candidate configs
(random configs and one-variable mutations of the best ones seen), the one with the highest
log expected improvement (``qLogExpectedImprovement``). Scoring a finite pool rather than
optimising a continuous relaxation keeps integer, categorical and binary spaces exact.

**Scale.** Scalarising only means something when the objectives share a scale. nasprune's
objectives all lie in [0, 1] by construction (errors ``1 - metric``, sizes and latency relative
to the unpruned model), so by default they are scalarised as they are, as in the paper, with
no rescaling by what the run has seen (which would change the weighting as the run goes).
For other metrics pass ``objective_bounds``: one ``(low, high)`` per objective, or
``"observed"`` for the range of the results so far.

**Pending and failed trials.** Configs that are pending, finished or failed are never
suggested again. Pending configs also enter the acquisition as fantasies (BoTorch's
``X_pending``: a candidate is scored jointly with them), so that several workers do not crowd
the same region. A trial that fails, or finishes with a non-finite objective, is left out of
the model.

**Seeds.** Every random choice (initial configs, candidate pool, weights) comes from one numpy
generator seeded with ``random_seed``; the model fit and the Monte Carlo sampler use torch
generators derived from it inside ``torch.random.fork_rng``, so torch's global state is left
as it was. BoTorch and torch are imported on the first model-based suggestion, so
``import nasprune.search`` stays light.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from nasprune.errors import NaspruneError
from nasprune.search.encoding import Config, VectorSearcher

logger = logging.getLogger(__name__)

#: ParEGO's weight of the linear term of the augmented Chebyshev scalarisation.
CHEBYSHEV_RHO = 0.05
#: Below this many finished trials (with finite objectives) suggestions are random.
MIN_OBSERVATIONS = 5


class ScalarisedBO(VectorSearcher):
    """Bayesian optimisation of a scalarisation of several objectives (base of LSBO and RSBO).

    :param config_space: Syne Tune config space.
    :param points_to_evaluate: Configs to suggest first, in order (e.g. the initial design).
    :param random_seed: Seed of every random choice.
    :param scalarisation: ``"linear"`` or ``"chebyshev"`` (augmented, with ``rho``).
    :param weights: ``"equal"`` (one fixed weight per objective), ``"random"`` (a new uniform
        draw from the simplex at every suggestion) or fixed weights (normalised to sum to one).
    :param objective_bounds: How objectives are brought to [0, 1] before scalarising: None
        (they are in [0, 1] already, as nasprune's are), one ``(low, high)`` per objective, or
        ``"observed"`` (the range of the finished trials).
    :param min_observations: Finished trials needed before the model is used; until then
        suggestions are random.
    :param num_candidates: Random configs in the candidate pool of each suggestion.
    :param num_mutants: One-variable mutations of the best finished configs added to the pool.
    :param mc_samples: Quasi-Monte Carlo samples of the acquisition function.
    :param rho: Weight of the linear term of the augmented Chebyshev scalarisation.
    :param max_retries: How often to redraw a random config that was already suggested.
    """

    def __init__(
        self,
        config_space: dict[str, Any],
        points_to_evaluate: list[Config] | None = None,
        random_seed: int | None = None,
        scalarisation: str = "linear",
        weights: Sequence[float] | str = "equal",
        objective_bounds: Sequence[tuple[float, float]] | str | None = None,
        min_observations: int = MIN_OBSERVATIONS,
        num_candidates: int = 512,
        num_mutants: int = 128,
        mc_samples: int = 128,
        rho: float = CHEBYSHEV_RHO,
        max_retries: int = 20,
    ):
        super().__init__(config_space, points_to_evaluate, random_seed, max_retries=max_retries)
        if scalarisation not in ("linear", "chebyshev"):
            raise NaspruneError(f"scalarisation must be 'linear' or 'chebyshev', got {scalarisation!r}")
        if isinstance(weights, str):
            if weights not in ("equal", "random"):
                raise NaspruneError(f"weights must be 'equal', 'random' or numbers, got {weights!r}")
        else:
            weights = np.asarray(weights, dtype=float)
            if weights.ndim != 1 or not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
                raise NaspruneError(f"weights must be non-negative numbers with a positive sum, got {list(weights)}")
            weights = weights / weights.sum()
        if isinstance(objective_bounds, str) and objective_bounds != "observed":
            raise NaspruneError(f"objective_bounds must be (low, high) pairs or 'observed', got {objective_bounds!r}")
        if objective_bounds is not None and not isinstance(objective_bounds, str):
            bounds = np.asarray(objective_bounds, dtype=float)
            if bounds.ndim != 2 or bounds.shape[1] != 2 or np.any(bounds[:, 1] <= bounds[:, 0]):
                raise NaspruneError(
                    f"objective_bounds must be (low, high) pairs with low < high, got {objective_bounds!r}"
                )
            objective_bounds = bounds
        if min_observations < 1:
            raise NaspruneError(f"min_observations must be at least 1, got {min_observations}")
        self.scalarisation = scalarisation
        self.weights = weights
        self.objective_bounds = objective_bounds
        self.min_observations = min_observations
        self.num_candidates = num_candidates
        self.num_mutants = num_mutants
        self.mc_samples = mc_samples
        self.rho = rho
        self._x_of: dict[bytes, np.ndarray] = {}  # every suggested config's vector, by key
        self._failed: set[bytes] = set()
        self._observed_x: list[np.ndarray] = []
        self._observed_f: list[np.ndarray] = []
        self.last_weights: np.ndarray | None = None  # the weighting of the last model-based suggestion
        self._num_model_suggestions = 0

    # --- suggestions ------------------------------------------------------------------------
    def suggest(self, **kwargs) -> Config | None:
        point = self._next_initial_point()
        if point is not None:
            x = self.encoder.encode(point)
            self._x_of[self.encoder.key(x)] = x
            return point
        if len(self._observed_f) < self.min_observations:
            return self._emit(self._sample_new())
        x = self._model_based_candidate()
        return self._emit(x if x is not None else self._sample_new())

    def _emit(self, x: np.ndarray) -> Config:
        self._x_of[self.encoder.key(x)] = x
        return super()._emit(x)

    def _is_new(self, key: bytes) -> bool:
        return super()._is_new(key) and key not in self._failed

    def _draw_weights(self, num_objectives: int) -> np.ndarray:
        if isinstance(self.weights, str):
            if self.weights == "equal":
                return np.full(num_objectives, 1.0 / num_objectives)
            return self.rng.dirichlet(np.ones(num_objectives))  # uniform on the simplex
        if len(self.weights) != num_objectives:
            raise NaspruneError(f"{len(self.weights)} weights given for {num_objectives} objectives")
        return self.weights

    def _normalise(self, F: np.ndarray) -> np.ndarray:
        if self.objective_bounds is None:
            return F
        if isinstance(self.objective_bounds, str):  # "observed"
            low, high = F.min(axis=0), F.max(axis=0)
        else:
            if len(self.objective_bounds) != F.shape[1]:
                raise NaspruneError(f"{len(self.objective_bounds)} objective bounds given for {F.shape[1]} objectives")
            low, high = self.objective_bounds[:, 0], self.objective_bounds[:, 1]
        return (F - low) / np.where(high > low, high - low, 1.0)

    def scalarise(self, F: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The scalarised objective (lower is better) of each row of ``F`` (already normalised)."""
        weighted = F * weights
        if self.scalarisation == "linear":
            return weighted.sum(axis=1)
        return weighted.max(axis=1) + self.rho * weighted.sum(axis=1)

    def _unit(self, X: np.ndarray) -> np.ndarray:
        """Free coordinates scaled to [0, 1]: the GP's inputs."""
        free = self.encoder.free
        lower, upper = self.encoder.lower[free], self.encoder.upper[free]
        return (np.atleast_2d(X)[:, free] - lower) / (upper - lower)

    def _candidate_pool(self, scores: np.ndarray) -> np.ndarray:
        """Random configs and mutants of the best observed ones, new ones only, deduplicated."""
        pool = [self.encoder.sample(self.rng) for _ in range(self.num_candidates)]
        best = np.argsort(scores, kind="stable")[: max(1, min(5, len(scores)))]
        for i in range(self.num_mutants):
            parent = self._observed_x[int(best[i % len(best)])]
            pool.append(self.encoder.mutate_one(parent, self.rng))
        seen: set[bytes] = set()
        fresh = []
        for x in pool:
            key = self.encoder.key(x)
            if key not in seen and self._is_new(key):
                seen.add(key)
                fresh.append(x)
        return np.array(fresh)

    def _model_based_candidate(self) -> np.ndarray | None:
        F = self._normalise(np.array(self._observed_f))
        weights = self._draw_weights(F.shape[1])
        scores = self.scalarise(F, weights)
        candidates = self._candidate_pool(scores)
        if len(candidates) == 0:
            return None
        self.last_weights = weights
        # One torch seed per model-based suggestion, derived from the searcher's seed.
        step_seed = int(np.random.default_rng([self.random_seed, self._num_model_suggestions]).integers(2**31 - 1))
        self._num_model_suggestions += 1
        pending = [self._x_of[key] for key in self._pending if key in self._x_of]
        try:
            values = _log_expected_improvement(
                self._unit(np.array(self._observed_x)), scores, self._unit(candidates),
                self._unit(np.array(pending)) if pending else None, self.mc_samples, step_seed,
            )
        except ImportError:
            raise NaspruneError("the 'lsbo' and 'rsbo' methods need BoTorch: pip install 'nasprune[bo]'") from None
        except (RuntimeError, ValueError) as err:  # a GP fit that fails numerically: explore instead
            logger.warning("%s: model fit failed (%s); suggesting a random config", type(self).__name__, err)
            return None
        return candidates[int(np.argmax(values))]

    # --- results ----------------------------------------------------------------------------
    def on_trial_complete(self, trial_id: int, config: Config, metrics: list[float]) -> None:
        x, key = self._record_completion(trial_id, config)
        f = np.asarray(metrics, dtype=float).ravel()
        if np.all(np.isfinite(f)):
            self._observed_x.append(x)
            self._observed_f.append(f)
        else:  # a failed evaluation reported as NaN/inf: not evidence about the objectives
            self._failed.add(key)

    def on_trial_error(self, trial_id: int) -> None:
        """The trial failed: forget it as pending and never suggest its config again."""
        key = self._trial_keys.get(trial_id)
        if key is None and 0 <= trial_id < len(self._suggested):
            key = self._suggested[trial_id]
        super().on_trial_error(trial_id)
        if key is not None:
            self._failed.add(key)


class LSBO(ScalarisedBO):
    """Linear scalarisation with Bayesian optimisation: one fixed weighting of the objectives
    (equal weights unless ``weights`` are given). See :class:`ScalarisedBO` for the arguments."""

    def __init__(
        self,
        config_space: dict[str, Any],
        points_to_evaluate: list[Config] | None = None,
        random_seed: int | None = None,
        weights: Sequence[float] | str = "equal",
        **kwargs: Any,
    ):
        super().__init__(
            config_space, points_to_evaluate, random_seed, scalarisation="linear", weights=weights, **kwargs
        )


class RSBO(ScalarisedBO):
    """Random scalarisation with Bayesian optimisation (ParEGO): a new uniform weighting for every
    suggestion, of the augmented Chebyshev scalarisation. See :class:`ScalarisedBO`."""

    def __init__(
        self,
        config_space: dict[str, Any],
        points_to_evaluate: list[Config] | None = None,
        random_seed: int | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("scalarisation", "chebyshev")
        super().__init__(config_space, points_to_evaluate, random_seed, weights="random", **kwargs)


def _log_expected_improvement(
    X: np.ndarray,
    scores: np.ndarray,
    candidates: np.ndarray,
    pending: np.ndarray | None,
    mc_samples: int,
    seed: int,
) -> np.ndarray:
    """Log expected improvement (for minimising ``scores``) of each candidate under a GP fitted
    to ``(X, scores)``, jointly with the ``pending`` points (fantasies)."""
    import torch
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.exceptions.errors import ModelFittingError
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.sampling.normal import SobolQMCNormalSampler
    from gpytorch.mlls import ExactMarginalLogLikelihood

    dtype = torch.float64
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        train_x = torch.as_tensor(X, dtype=dtype)
        train_y = -torch.as_tensor(scores, dtype=dtype).unsqueeze(-1)  # BoTorch maximises
        model = SingleTaskGP(train_x, train_y, outcome_transform=Standardize(m=1))
        # 50 L-BFGS iterations: the hyperparameters have settled by then on these small
        # data sets, and the fit is most of a suggestion's time.
        try:
            fit_gpytorch_mll(
                ExactMarginalLogLikelihood(model.likelihood, model),
                optimizer_kwargs={"options": {"maxiter": 50}},
            )
        except ModelFittingError as err:
            raise RuntimeError(str(err)) from None
        acquisition = qLogExpectedImprovement(
            model,
            best_f=train_y.max(),
            sampler=SobolQMCNormalSampler(torch.Size([mc_samples]), seed=seed),
            X_pending=None if pending is None else torch.as_tensor(pending, dtype=dtype),
        )
        values = []
        with torch.no_grad():
            for chunk in torch.as_tensor(candidates, dtype=dtype).split(256):
                values.append(acquisition(chunk.unsqueeze(1)))
    return torch.cat(values).numpy()
