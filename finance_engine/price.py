"""Carbon price model: reference prices, stochastic paths, scenarios, local spreads and calibration.

Model
-----
The log price ``x_t = ln P_t`` (P in CNY/tCO2e) is an Ornstein-Uhlenbeck process with compound-Poisson
jumps::

    dx = kappa (mu - x) dt + sigma dW + J dN,    mu = ln(long-run price),
    N ~ Poisson(lambda t),   J ~ Normal(m_J, s_J^2) i.i.d.

It is simulated with the *exact* transition over a step ``dt``: with ``a = exp(-kappa dt)``,
``x' = mu + (x - mu) a + sigma sqrt((1 - a^2) / (2 kappa)) Z + sum_i J_i exp(-kappa (dt - tau_i))``
where the jump times ``tau_i`` are uniform within the step (so a jump early in the step has partly
decayed by its end). Neither the diffusion nor the jump part is approximated, at any step size.
Closed forms (Campbell's theorem for the jump part), used by the tests::

    E[x_t]   = mu + (x_0 - mu) e^{-kappa t} + lambda m_J (1 - e^{-kappa t}) / kappa
    Var[x_t] = (sigma^2 + lambda (m_J^2 + s_J^2)) (1 - e^{-2 kappa t}) / (2 kappa)

``kappa = 0`` (no mean reversion) is allowed and uses the limits (``t`` and ``t``).

Random numbers come from :class:`models.rng.KeyedRandom` keyed by *path id* and step index, so a path is
the same whichever block it is simulated in. Streams: ``price.diffusion`` (one normal per path and
step), ``price.jump_count`` (one uniform per path and step, inverted through the Poisson CDF),
``price.jump_time.<i>`` and ``price.jump_size.<i>`` for the i-th jump of a step, ``price.spread.<name>``
for a local-credit spread factor, ``price.liquidity_haircut`` for a forced-sale haircut.

Antithetic variates (``antithetic=True``): paths ``2k`` and ``2k+1`` share the draws of key ``k``;
the odd path uses ``-Z`` for every normal and ``1 - U`` for every uniform (jump counts, jump times).
Both members of a pair are still pure functions of their own path id, so blocking does not matter, but
an antithetic path ``j`` is *not* the same path as path ``j`` without antithetics.

Parameters live in ``finance_engine/data/price_model.yaml`` and the public reference prices in
``finance_engine/data/carbon_prices.csv``; every number carries a source key (``references:`` of
``models/parameters/lishui.yaml``) and a confidence label.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from scipy import optimize, stats
from scipy.special import gammaln, logsumexp

from models.parameters import data_file_stamp, format_validation_error, resolve_parameter_path
from models.rng import KeyedRandom
from models._yaml import DataFileError, load_yaml, read_data_file

DATA_DIR = Path(__file__).resolve().parent / "data"
PRICE_MODEL_PATH = DATA_DIR / "price_model.yaml"
REFERENCE_PRICES_PATH = DATA_DIR / "carbon_prices.csv"
CONFIDENCE_LABELS: tuple[str, ...] = ("read", "derived", "memory", "assumption")
DAYS_PER_YEAR = 365.25
MAX_STEPS_PER_YEAR = 366
#: the largest diffusion volatility a price model or scenario may set (1/sqrt(year))
MAX_VOLATILITY = 5.0
_NO_PARCELS = np.empty(0, np.uint64)


class PriceModelError(ValueError):
    """Invalid price-model parameters, scenario, reference data or simulation input."""


# =====================================================================================================
# Parameters
# =====================================================================================================
@dataclass(frozen=True)
class PriceModelParams:
    """Parameters of the OU-jump log-price model.

    Parameters
    ----------
    long_run_price_cny_per_tco2e : float
        ``L`` > 0; ``mu = ln L`` is the level the log price reverts to (without jumps).
    mean_reversion_per_year : float
        ``kappa`` >= 0, 1/yr. Half-life ``ln 2 / kappa``. 0 means a random walk in log price.
    volatility_per_sqrt_year : float
        ``sigma`` >= 0, annualised volatility of the log price (0.30 = 30 %/yr).
    jump_intensity_per_year : float
        ``lambda`` >= 0, expected number of jumps per year.
    jump_mean_log, jump_sd_log : float
        Mean and standard deviation (>= 0) of a jump in log price.
    steps_per_year : int
        Simulation steps per year (1 = annual). The transition is exact at any step size; finer
        steps only give finer output.
    """

    long_run_price_cny_per_tco2e: float
    mean_reversion_per_year: float
    volatility_per_sqrt_year: float
    jump_intensity_per_year: float = 0.0
    jump_mean_log: float = 0.0
    jump_sd_log: float = 0.0
    steps_per_year: int = 1

    def __post_init__(self) -> None:
        for name in ("long_run_price_cny_per_tco2e", "mean_reversion_per_year", "volatility_per_sqrt_year",
                     "jump_intensity_per_year", "jump_mean_log", "jump_sd_log"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise PriceModelError(f"{name} must be a number, got {v!r}")
            if not math.isfinite(float(v)):
                raise PriceModelError(f"{name} must be finite, got {v}")
        if not self.long_run_price_cny_per_tco2e > 0:
            raise PriceModelError(f"long_run_price_cny_per_tco2e must be > 0, got {self.long_run_price_cny_per_tco2e}")
        if not 0 <= self.mean_reversion_per_year <= 100:
            raise PriceModelError(f"mean_reversion_per_year must lie in [0, 100] 1/yr, got {self.mean_reversion_per_year}")
        if not 0 <= self.volatility_per_sqrt_year <= MAX_VOLATILITY:
            raise PriceModelError(f"volatility_per_sqrt_year must lie in [0, 5], got {self.volatility_per_sqrt_year}")
        if not 0 <= self.jump_intensity_per_year <= 365:
            raise PriceModelError(f"jump_intensity_per_year must lie in [0, 365], got {self.jump_intensity_per_year}")
        if not 0 <= self.jump_sd_log <= 5:
            raise PriceModelError(f"jump_sd_log must lie in [0, 5], got {self.jump_sd_log}")
        if not abs(self.jump_mean_log) <= 5:
            raise PriceModelError(f"jump_mean_log must lie in [-5, 5], got {self.jump_mean_log}")
        if isinstance(self.steps_per_year, bool) or not isinstance(self.steps_per_year, (int, np.integer)) \
                or not 1 <= self.steps_per_year <= MAX_STEPS_PER_YEAR:
            raise PriceModelError(f"steps_per_year must be an integer in [1, {MAX_STEPS_PER_YEAR}], got {self.steps_per_year!r}")

    @property
    def mu_log(self) -> float:
        """``ln L``."""
        return math.log(self.long_run_price_cny_per_tco2e)

    def with_(self, **changes: Any) -> "PriceModelParams":
        """A copy with some fields changed (validated)."""
        return replace(self, **changes)


def _decay_and_variance(kappa: float, dt: float) -> tuple[float, float]:
    """``exp(-kappa dt)`` and ``(1 - exp(-2 kappa dt)) / (2 kappa)`` (-> dt as kappa -> 0)."""
    a = math.exp(-kappa * dt)
    v = -math.expm1(-2.0 * kappa * dt) / (2.0 * kappa) if kappa > 0 else dt
    return a, v


def log_price_moments(params: PriceModelParams, start_price_cny_per_tco2e: float,
                      horizon_years: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form mean and variance of ``ln P_t`` given ``P_0``.

    Parameters
    ----------
    params : PriceModelParams
    start_price_cny_per_tco2e : float
        ``P_0`` > 0.
    horizon_years : float or array
        ``t`` >= 0, years.

    Returns
    -------
    mean, variance : ndarray
        Of the log price at ``t`` (jumps included).
    """
    if not start_price_cny_per_tco2e > 0:
        raise PriceModelError(f"start_price_cny_per_tco2e must be > 0, got {start_price_cny_per_tco2e}")
    t = np.asarray(horizon_years, dtype=float)
    if np.any(t < 0) or not np.all(np.isfinite(t)):
        raise PriceModelError("horizon_years must be finite and >= 0")
    k, lam = params.mean_reversion_per_year, params.jump_intensity_per_year
    m, s = params.jump_mean_log, params.jump_sd_log
    if k > 0:
        g1 = -np.expm1(-k * t) / k
        g2 = -np.expm1(-2 * k * t) / (2 * k)
    else:
        g1 = t.copy()
        g2 = t.copy()
    x0 = math.log(start_price_cny_per_tco2e)
    mean = params.mu_log + (x0 - params.mu_log) * np.exp(-k * t) + lam * m * g1
    var = (params.volatility_per_sqrt_year ** 2 + lam * (m * m + s * s)) * g2
    return mean, var


def deviation_log_mean_exp(params: PriceModelParams, years: int, volatility_per_sqrt_year: float | None = None
                           ) -> np.ndarray:
    """``c(t) = ln E[exp(y_t - y_0 e^{-kappa t})]``: the log of the mean of ``exp`` of the OU-jump deviation's
    random part, on the grid :func:`time_grid_years` ``(years, params.steps_per_year)``.

    The diffusion part is normal with variance ``sigma^2 (1 - e^{-2 kappa t}) / (2 kappa)`` (the exact
    recursion's: ``sum_j a^{2j} sigma^2 v`` over the steps is this at the grid times), so it adds
    ``sigma^2 (1 - e^{-2 kappa t}) / (4 kappa)``. The jump part ``sum_i J_i e^{-kappa (t - tau_i)}`` over
    a Poisson process of rate ``lambda`` is compound Poisson, whose log-MGF at 1 is (Campbell's theorem)
    ``lambda int_0^t (E[exp(J e^{-kappa s})] - 1) ds`` with ``E[exp(J c)] = exp(m_J c + s_J^2 c^2 / 2)``;
    the integral is taken by 20-point Gauss-Legendre on each step (its integrand is smooth: exact to
    rounding). The mean price is ``E[P_t] = exp(ln P_med(t) + c(t))``, ``P_med`` the path without
    shocks (the model's log mean less the jumps' drift; a scenario's curve times ``exp(y_0 e^{-kappa t})``).

    Parameters
    ----------
    params : PriceModelParams
    years : int
    volatility_per_sqrt_year : float, optional
        The diffusion volatility (1/sqrt(year)); default the model's (a scenario may set its own).

    Returns
    -------
    ndarray, shape (years * steps_per_year + 1,)
        Dimensionless (log scale); 0 at ``t = 0``.
    """
    sigma = params.volatility_per_sqrt_year if volatility_per_sqrt_year is None else float(volatility_per_sqrt_year)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise PriceModelError(f"volatility_per_sqrt_year must be finite and >= 0, got {volatility_per_sqrt_year}")
    t = time_grid_years(years, params.steps_per_year)
    k, lam = params.mean_reversion_per_year, params.jump_intensity_per_year
    g2 = -np.expm1(-2 * k * t) / (2 * k) if k > 0 else t.copy()
    out = 0.5 * sigma * sigma * g2
    if lam > 0 and t.size > 1:
        m, sj = params.jump_mean_log, params.jump_sd_log
        nodes, weights = np.polynomial.legendre.leggauss(20)
        lo, hi = t[:-1, None], t[1:, None]
        s = 0.5 * (hi - lo) * nodes[None, :] + 0.5 * (hi + lo)          # (steps, 20): time since the jump
        c = np.exp(-k * s)
        h = np.expm1(m * c + 0.5 * sj * sj * c * c)
        out[1:] += lam * np.cumsum((0.5 * (hi - lo)[:, 0]) * (h * weights[None, :]).sum(axis=1))
    return out


def time_grid_years(years: int, steps_per_year: int = 1) -> np.ndarray:
    """Times (years from t = 0) of the columns returned by the simulators."""
    return np.arange(int(years) * int(steps_per_year) + 1) / float(steps_per_year)


# =====================================================================================================
# Simulation
# =====================================================================================================
def _check_path_ids(path_ids) -> np.ndarray:
    ids = np.asarray(path_ids)
    if ids.ndim != 1:
        raise PriceModelError(f"path_ids must be 1-D, got shape {ids.shape}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise PriceModelError(f"path_ids must be integers (global path indices), got dtype {ids.dtype}")
    if ids.size and ids.min() < 0:
        raise PriceModelError("path_ids must be >= 0")
    return ids.astype(np.int64)


class _Draws:
    """Keyed draws for a block of paths, with optional antithetic pairing."""

    def __init__(self, seed: int, ids: np.ndarray, antithetic: bool):
        self.antithetic = antithetic
        if antithetic:
            self.rnd = KeyedRandom(int(seed), (ids // 2).astype(np.int64), _NO_PARCELS)
            self.odd = (ids % 2) == 1
            self.sign = np.where(self.odd, -1.0, 1.0)
        else:
            self.rnd = KeyedRandom(int(seed), ids, _NO_PARCELS)

    def _at(self, idx: np.ndarray | None) -> KeyedRandom:
        # a path's draws depend on its id alone: the paths ``idx`` get the numbers they get in the block
        return self.rnd if idx is None else KeyedRandom(self.rnd.seed, self.rnd.path_ids[idx], _NO_PARCELS)

    def normal(self, stream: str, step: int, idx: np.ndarray | None = None) -> np.ndarray:
        """Standard normals of every path of the block, or of the paths at positions ``idx``."""
        z = self._at(idx).path_normal(stream, step)
        if not self.antithetic:
            return z
        return z * (self.sign if idx is None else self.sign[idx])

    def uniform(self, stream: str, step: int, idx: np.ndarray | None = None) -> np.ndarray:
        """Uniforms of every path of the block, or of the paths at positions ``idx``."""
        u = self._at(idx).path_uniform(stream, step)
        if not self.antithetic:
            return u
        return np.where(self.odd if idx is None else self.odd[idx], 1.0 - u, u)


def _check_common_factor(common_factor, factor_correlation: float, n_paths: int, n_steps: int):
    if common_factor is None:
        if factor_correlation != 0.0:
            raise PriceModelError("factor_correlation is set but no common_factor was given")
        return None
    if not -1.0 <= float(factor_correlation) <= 1.0:
        raise PriceModelError(f"factor_correlation must lie in [-1, 1], got {factor_correlation}")
    f = np.asarray(common_factor, dtype=float)
    if f.shape != (n_paths, n_steps):
        raise PriceModelError(
            f"common_factor must have shape (n_paths, n_steps) = ({n_paths}, {n_steps}) (one standard normal "
            f"per path and step), got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise PriceModelError("common_factor must be finite")
    return f


@dataclass(frozen=True)
class PriceShocks:
    """The draws of a block of price paths, kept so the paths can be rebuilt at another volatility.

    The OU-jump deviation is linear in its shocks: ``y' = a y + sd z + jumps`` with ``sd = sigma
    sqrt(v)``. Only ``sd`` depends on the volatility, so one set of draws gives the paths of any
    volatility, each bit for bit what a simulation with that volatility draws (the tests hold them to
    it): a volatility sensitivity costs the recursion, not the draws.

    Attributes
    ----------
    diffusion : ndarray (n_steps, n_paths) or None
        Standard normals of each step after the common-factor mix (a step's row is contiguous); None
        when the diffusion is off (zero volatility and no common factor), which then cannot be rebuilt
        at another volatility.
    jumps : tuple
        Per step, the step's jumps in order: ``(positions, increments)``, the paths with an i-th jump
        and its log-price increment at the end of the step.
    decay : float
        ``a = exp(-kappa dt)``.
    unit_variance : float
        ``v = (1 - a^2) / (2 kappa)``: a step's diffusion variance per unit ``sigma^2``.
    """

    diffusion: np.ndarray | None
    jumps: tuple[tuple[tuple[np.ndarray, np.ndarray], ...], ...]
    decay: float
    unit_variance: float

    @property
    def n_steps(self) -> int:
        return len(self.jumps)

    def deviation(self, y0: np.ndarray, volatility: float) -> np.ndarray:
        """The deviation ``y`` (n_paths, n_steps + 1) from ``y0`` at ``volatility`` (1/sqrt(year))."""
        sd = float(volatility) * math.sqrt(self.unit_variance)
        if self.diffusion is None and sd > 0:
            raise PriceModelError("these draws have no diffusion (zero volatility): simulate the paths again")
        z = self.diffusion
        return _recurse(y0, self.decay, sd, self.n_steps,
                        ((None if z is None else z[step], events) for step, events in enumerate(self.jumps)))


def _poisson_counts(cdf: np.ndarray, u: np.ndarray, k_max: int) -> np.ndarray:
    """``min(k_max, min{k : cdf[k] >= u})`` per uniform: ``searchsorted(cdf, u, side="left")``, counted as
    the number of CDF values below ``u``, level by level while any uniform is still above (most paths
    have no jump: the first comparison settles them)."""
    if cdf.size > 8:  # a high jump intensity: one pass a level would cost more than the binary search
        return np.minimum(np.searchsorted(cdf, u, side="left"), k_max)
    counts = np.zeros(u.size, dtype=np.int64)
    for c in cdf:  # non-decreasing: once no uniform exceeds c, none exceeds a later value
        above = u > c
        if not above.any():
            break
        counts += above
    return np.minimum(counts, k_max)


def _check_years_seed(years, seed) -> None:
    if isinstance(years, bool) or not isinstance(years, (int, np.integer)) or years < 0:
        raise PriceModelError(f"years must be an integer >= 0, got {years!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise PriceModelError(f"seed must be an integer in [0, 2**64), got {seed!r}")


def _shock_steps(params: PriceModelParams, ids: np.ndarray, years: int, seed: int, antithetic: bool,
                 common_factor, factor_correlation: float, diffusion: bool = True):
    """``(decay, unit_variance, n_steps, steps)``: ``steps`` yields each step's keyed draws in order,
    ``(z, events)`` -- the step's standard normals after the common-factor mix (None without diffusion)
    and its jumps as ``(positions, increments)`` -- so a single recursion can use them as they come
    and :func:`price_shocks` can keep them."""
    _check_years_seed(years, seed)
    spy = params.steps_per_year
    n_steps = int(years) * spy
    n = ids.size
    f = _check_common_factor(common_factor, factor_correlation, n, n_steps)
    rho = float(factor_correlation)
    rho_c = math.sqrt(max(0.0, 1.0 - rho * rho))
    dt = 1.0 / spy
    k = params.mean_reversion_per_year
    a, v = _decay_and_variance(k, dt)
    lam_dt = params.jump_intensity_per_year * dt
    m_j, s_j = params.jump_mean_log, params.jump_sd_log
    draws = _Draws(int(seed), ids, antithetic)
    if lam_dt > 0:
        # Poisson inverse CDF by table look-up: count = min{k : F(k) >= u}
        k_max = int(stats.poisson.ppf(1.0 - 1e-15, lam_dt)) + 2
        poisson_cdf = stats.poisson.cdf(np.arange(k_max + 1), lam_dt)
    with_diffusion = diffusion or f is not None

    def steps():
        for step in range(n_steps):
            z = None
            if with_diffusion:
                z = draws.normal("price.diffusion", step)
                if f is not None:
                    z = rho * f[:, step] + rho_c * z
            events = []
            if lam_dt > 0:
                counts = _poisson_counts(poisson_cdf, draws.uniform("price.jump_count", step), k_max)
                for i in range(int(counts.max(initial=0))):  # loop over the events of a step
                    # the i-th jump's time and size, drawn for the paths that have one (a path's draws are
                    # keyed by its id, so these are the numbers a draw for every path gives them)
                    has = np.flatnonzero(counts > i)
                    tau = draws.uniform(f"price.jump_time.{i}", step, has)  # fraction of the step elapsed
                    size = m_j + s_j * draws.normal(f"price.jump_size.{i}", step, has)
                    events.append((has, size * np.exp(-k * dt * (1.0 - tau))))
            yield z, tuple(events)

    return a, v, n_steps, steps()


def _recurse(y0: np.ndarray, decay: float, sd: float, n_steps: int, steps) -> np.ndarray:
    """The deviation (n_paths, n_steps + 1) from ``y0``: ``y' = a y + sd z + jumps`` step by step."""
    # steps along rows (contiguous per step), handed back transposed: (n_paths, n_steps + 1)
    out = np.empty((n_steps + 1, np.shape(y0)[0]))
    y = out[0]
    y[:] = y0
    for step, (z, events) in enumerate(steps):
        nxt = out[step + 1]
        np.multiply(y, decay, out=nxt)
        if z is not None:
            nxt += sd * z
        for has, increment in events:
            nxt[has] += increment
        y = nxt
    return out.T


def price_shocks(params: PriceModelParams, ids: np.ndarray, years: int, seed: int, antithetic: bool,
                 common_factor, factor_correlation: float, diffusion: bool = True) -> PriceShocks:
    """The keyed draws of the OU-jump deviation for paths ``ids``, kept (see :class:`PriceShocks`).

    ``diffusion=False`` skips the diffusion normals (a run with zero volatility and no common factor
    draws none). Keeping them costs one (steps x paths) array beside the paths.
    """
    a, v, n_steps, steps = _shock_steps(params, ids, years, seed, antithetic, common_factor, factor_correlation,
                                        diffusion)
    z_all, jumps = None, []
    for step, (z, events) in enumerate(steps):
        if z is not None:
            if z_all is None:
                z_all = np.empty((n_steps, ids.size))
            z_all[step] = z
        jumps.append(events)
    return PriceShocks(z_all, tuple(jumps), a, v)


def _start_array(start_price_cny_per_tco2e, n: int) -> np.ndarray:
    p0 = np.broadcast_to(np.asarray(start_price_cny_per_tco2e, dtype=float), (n,))
    if not np.all(np.isfinite(p0)) or np.any(p0 <= 0):
        raise PriceModelError("start_price_cny_per_tco2e must be finite and > 0 (a scalar or one per path)")
    return p0


def simulate_price_paths(params: PriceModelParams, path_ids, years: int, seed: int, *,
                         start_price_cny_per_tco2e, antithetic: bool = False,
                         common_factor: np.ndarray | None = None, factor_correlation: float = 0.0) -> np.ndarray:
    """Simulate carbon price paths, vectorised over paths (loop over steps only).

    Parameters
    ----------
    params : PriceModelParams
    path_ids : array of int
        Global path indices of this block (>= 0). Path ``j`` is the same whatever block it is in.
    years : int
        Horizon in years; there are ``years * params.steps_per_year`` steps.
    seed : int
        Run seed for :class:`models.rng.KeyedRandom`.
    start_price_cny_per_tco2e : float or array (n_paths,)
        Price at t = 0, CNY/tCO2e.
    antithetic : bool
        Pair paths ``2k``/``2k+1`` with opposite-sign draws (see module docstring).
    common_factor : array (n_paths, n_steps), optional
        A standard-normal factor per path and step (e.g. a physical-risk driver) that the diffusion
        shock is correlated with: ``z = rho f + sqrt(1 - rho^2) e`` with ``e`` this model's own draw, so
        ``corr(z, f) = rho`` and ``z`` stays standard normal. Jumps are not affected. With
        ``steps_per_year = 1`` this is one factor per path and year. Not flipped by ``antithetic``.
    factor_correlation : float
        ``rho`` in [-1, 1].

    Returns
    -------
    ndarray, shape (n_paths, years * steps_per_year + 1)
        Price in CNY/tCO2e; column 0 is the start price, column ``s`` the price at ``s / steps_per_year``
        years (see :func:`time_grid_years`).
    """
    # C-ordered, path by path, as callers index it (the recursion builds it step by step)
    return np.ascontiguousarray(simulate_price_paths_by_volatility(
        params, path_ids, years, seed, (1.0,), start_price_cny_per_tco2e=start_price_cny_per_tco2e,
        antithetic=antithetic, common_factor=common_factor, factor_correlation=factor_correlation)[0])


def _check_volatility_factors(volatility_factors) -> tuple[float, ...]:
    factors = tuple(float(x) for x in volatility_factors)
    if not factors or not all(math.isfinite(x) and x >= 0 for x in factors):
        raise PriceModelError(f"volatility_factors must be one or more finite numbers >= 0, got {volatility_factors!r}")
    return factors


def simulate_price_paths_by_volatility(params: PriceModelParams, path_ids, years: int, seed: int,
                                       volatility_factors: Sequence[float], *, start_price_cny_per_tco2e,
                                       antithetic: bool = False, common_factor: np.ndarray | None = None,
                                       factor_correlation: float = 0.0) -> list[np.ndarray]:
    """:func:`simulate_price_paths` at several volatilities from one set of draws.

    Element ``i`` equals ``simulate_price_paths(params.with_(volatility_per_sqrt_year=f_i * sigma), ...)``
    bit for bit (``f_i = volatility_factors[i]``): the deviation is linear in its shocks
    (:class:`PriceShocks`), so a volatility sensitivity costs one recursion over the steps instead of
    the draws. Arguments otherwise as :func:`simulate_price_paths`.
    """
    factors = _check_volatility_factors(volatility_factors)
    ids = _check_path_ids(path_ids)
    p0 = _start_array(start_price_cny_per_tco2e, ids.size)
    y0 = np.log(p0) - params.mu_log
    devs = _deviations(params, ids, years, seed, antithetic, common_factor, factor_correlation, y0,
                       [params.volatility_per_sqrt_year * f for f in factors])
    return [np.exp(y + params.mu_log) for y in devs]


def _deviations(params: PriceModelParams, ids: np.ndarray, years: int, seed: int, antithetic: bool, common_factor,
                factor_correlation: float, y0: np.ndarray, sigmas: list[float]) -> list[np.ndarray]:
    """The OU-jump deviation at each volatility of ``sigmas`` from one set of draws: one volatility runs
    the recursion on the draws as they come (nothing kept), several keep them (:func:`price_shocks`)."""
    bad = [x for x in sigmas if not 0.0 <= x <= MAX_VOLATILITY]
    if bad:  # a separate run at that volatility would be refused: so is its sensitivity
        raise PriceModelError(f"a volatility factor takes the volatility to {bad[0]:g}, outside [0, {MAX_VOLATILITY:g}]")
    if len(sigmas) == 1:
        a, v, n_steps, steps = _shock_steps(params, ids, years, seed, antithetic, common_factor, factor_correlation,
                                            diffusion=sigmas[0] > 0)
        return [_recurse(y0, a, float(sigmas[0]) * math.sqrt(v), n_steps, steps)]
    shocks = price_shocks(params, ids, years, seed, antithetic, common_factor, factor_correlation,
                          diffusion=max(sigmas) > 0)
    return [shocks.deviation(y0, x) for x in sigmas]


# =====================================================================================================
# Scenarios
# =====================================================================================================
@dataclass(frozen=True)
class PriceScenario:
    """A deterministic price path given by anchors (calendar year -> CNY/tCO2e).

    Linear in price between anchors, flat after the last anchor; a year before the first anchor is an
    error. ``volatility_per_sqrt_year`` (optional) is used when the scenario is run stochastically.
    """

    name: str
    description: str
    source: str
    confidence: str
    anchor_years: tuple[float, ...]
    anchor_prices_cny_per_tco2e: tuple[float, ...]
    volatility_per_sqrt_year: float | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        yrs = np.asarray(self.anchor_years, dtype=float)
        prs = np.asarray(self.anchor_prices_cny_per_tco2e, dtype=float)
        if yrs.size == 0 or yrs.size != prs.size:
            raise PriceModelError(f"scenario {self.name!r}: needs one price per anchor year and at least one anchor")
        if not np.all(np.isfinite(yrs)) or np.any(np.diff(yrs) <= 0):
            raise PriceModelError(f"scenario {self.name!r}: anchor years must be finite and strictly increasing, got {list(yrs)}")
        if not np.all(np.isfinite(prs)) or np.any(prs <= 0):
            raise PriceModelError(f"scenario {self.name!r}: anchor prices must be finite and > 0, got {list(prs)}")
        if self.confidence not in CONFIDENCE_LABELS:
            raise PriceModelError(f"scenario {self.name!r}: confidence must be one of {CONFIDENCE_LABELS}")
        if self.volatility_per_sqrt_year is not None and not 0 <= self.volatility_per_sqrt_year <= MAX_VOLATILITY:
            raise PriceModelError(f"scenario {self.name!r}: volatility_per_sqrt_year must lie in [0, 5]")

    def price_at(self, calendar_year) -> np.ndarray:
        """Scenario price (CNY/tCO2e) at calendar year(s), fractional years allowed."""
        t = np.asarray(calendar_year, dtype=float)
        first = self.anchor_years[0]
        if np.any(t < first) or not np.all(np.isfinite(t)):
            raise PriceModelError(f"scenario {self.name!r} starts in {first:g}; asked for {np.min(t):g}")
        return np.interp(t, self.anchor_years, self.anchor_prices_cny_per_tco2e)

    def path(self, base_year: float, years: int, steps_per_year: int = 1) -> np.ndarray:
        """Prices on the simulation grid ``base_year + time_grid_years(years, steps_per_year)``."""
        return self.price_at(base_year + time_grid_years(years, steps_per_year))


def simulate_scenario_paths(scenario: PriceScenario, params: PriceModelParams, path_ids, years: int, seed: int, *,
                            base_year: float, start_price_cny_per_tco2e=None, antithetic: bool = False,
                            common_factor: np.ndarray | None = None, factor_correlation: float = 0.0) -> np.ndarray:
    """Stochastic paths around a scenario curve.

    ``ln P_t = ln S(t) + y_t`` with ``y`` the OU-jump deviation of ``params`` (the long-run level of
    ``params`` is not used) and volatility ``scenario.volatility_per_sqrt_year`` if set, else
    ``params.volatility_per_sqrt_year``. ``y_0 = ln(P_0 / S(base_year))`` (0 if no start price is given).
    The diffusion reverts ``y`` to 0 and the jumps add their own drift, as they shift the base model's
    level: ``E[y_t] = y_0 e^{-kt} + (lambda m_J / k)(1 - e^{-kt})``, so a scenario's anchors, like the
    base model's ``L``, are the price level without jumps; with the default downside jumps (0.3 a year of
    mean -0.10, k = 0.5) paths settle about 6 % below the anchors in log mean.
    With zero volatility and no jumps the paths equal the scenario curve. Arguments and output as
    :func:`simulate_price_paths`.
    """
    return np.ascontiguousarray(simulate_scenario_paths_by_volatility(
        scenario, params, path_ids, years, seed, (1.0,), base_year=base_year,
        start_price_cny_per_tco2e=start_price_cny_per_tco2e, antithetic=antithetic, common_factor=common_factor,
        factor_correlation=factor_correlation)[0])


def simulate_scenario_paths_by_volatility(scenario: PriceScenario, params: PriceModelParams, path_ids, years: int,
                                          seed: int, volatility_factors: Sequence[float], *, base_year: float,
                                          start_price_cny_per_tco2e=None, antithetic: bool = False,
                                          common_factor: np.ndarray | None = None,
                                          factor_correlation: float = 0.0) -> list[np.ndarray]:
    """:func:`simulate_scenario_paths` at several volatilities from one set of draws.

    The factors scale the volatility the scenario runs at (its own ``volatility_per_sqrt_year`` if
    set, else the model's); element ``i`` equals a run at ``f_i`` times it, bit for bit (see
    :func:`simulate_price_paths_by_volatility`).
    """
    factors = _check_volatility_factors(volatility_factors)
    ids = _check_path_ids(path_ids)
    curve = scenario.path(base_year, years, params.steps_per_year)
    if start_price_cny_per_tco2e is None:
        y0 = np.zeros(ids.size)
    else:
        y0 = np.log(_start_array(start_price_cny_per_tco2e, ids.size) / curve[0])
    sigma = (params.volatility_per_sqrt_year if scenario.volatility_per_sqrt_year is None
             else float(scenario.volatility_per_sqrt_year))
    devs = _deviations(params, ids, years, seed, antithetic, common_factor, factor_correlation, y0,
                       [sigma * f for f in factors])
    return [curve[None, :] * np.exp(y) for y in devs]


# =====================================================================================================
# Local-credit spread and liquidity haircut
# =====================================================================================================
@dataclass(frozen=True)
class LocalCreditSpread:
    """Multiplicative basis of a local credit (碳普惠, 碳票) against the reference (CEA) price path, on which
    CCER credits are valued themselves.

    ``price_local = price_reference * F``, ``ln F ~ Normal(ln median_factor, log_sd^2)`` drawn once per path.
    """

    name: str
    median_factor: float
    log_sd: float
    description: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.median_factor) and self.median_factor > 0):
            raise PriceModelError(f"spread {self.name!r}: median_factor must be > 0, got {self.median_factor}")
        if not (math.isfinite(self.log_sd) and 0 <= self.log_sd <= 3):
            raise PriceModelError(f"spread {self.name!r}: log_sd must lie in [0, 3], got {self.log_sd}")

    def factors(self, path_ids, seed: int) -> np.ndarray:
        """Spread factor per path, shape (n_paths,), keyed by path id (stream ``price.spread.<name>``)."""
        ids = _check_path_ids(path_ids)
        z = KeyedRandom(int(seed), ids, _NO_PARCELS).path_normal(f"price.spread.{self.name}", 0)
        return self.median_factor * np.exp(self.log_sd * z)


def local_credit_price(reference_price_cny_per_tco2e: np.ndarray, spread: LocalCreditSpread, path_ids,
                       seed: int) -> np.ndarray:
    """Local-credit price paths from reference (CEA) price paths.

    Parameters
    ----------
    reference_price_cny_per_tco2e : ndarray (n_paths,) or (n_paths, n_times)
    spread : LocalCreditSpread
    path_ids, seed
        As for :func:`simulate_price_paths`; the factor of path ``j`` is the same in every block.
    """
    p = np.asarray(reference_price_cny_per_tco2e, dtype=float)
    ids = _check_path_ids(path_ids)
    if p.ndim not in (1, 2) or p.shape[0] != ids.size:
        raise PriceModelError(f"reference_price_cny_per_tco2e must have n_paths={ids.size} rows, got shape {p.shape}")
    f = spread.factors(ids, seed)
    return p * (f if p.ndim == 1 else f[:, None])


@dataclass(frozen=True)
class LiquidityHaircut:
    """Forced-sale discount range (fractions of market value)."""

    central: float
    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.central <= self.high < 1:
            raise PriceModelError(
                f"liquidity haircut needs 0 <= low <= central <= high < 1, got {self.low}, {self.central}, {self.high}")

    def draws(self, path_ids, seed: int) -> np.ndarray:
        """Haircut per path, uniform on [low, high] (stream ``price.liquidity_haircut``)."""
        ids = _check_path_ids(path_ids)
        u = KeyedRandom(int(seed), ids, _NO_PARCELS).path_uniform("price.liquidity_haircut", 0)
        return self.low + (self.high - self.low) * u


def forced_sale_value(value_cny, haircut_fraction) -> np.ndarray:
    """Value realised in a forced sale: ``value_cny * (1 - haircut_fraction)`` (broadcast).

    ``haircut_fraction`` must lie in [0, 1].
    """
    h = np.asarray(haircut_fraction, dtype=float)
    if not np.all(np.isfinite(h)) or np.any((h < 0) | (h > 1)):
        raise PriceModelError("haircut_fraction must lie in [0, 1]")
    return np.asarray(value_cny, dtype=float) * (1.0 - h)


# =====================================================================================================
# Data files
# =====================================================================================================
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Sourced(_Strict):
    value: float
    source: str
    confidence: Literal["read", "derived", "memory", "assumption"]
    note: str | None = None


class _ModelBlock(_Strict):
    description: str = ""
    #: today's price of this series (default: the file's ``start_price_cny_per_tco2e``, the CEA's)
    start_price_cny_per_tco2e: _Sourced | None = None
    long_run_price_cny_per_tco2e: _Sourced
    mean_reversion_per_year: _Sourced
    volatility_per_sqrt_year: _Sourced
    jump_intensity_per_year: _Sourced
    jump_mean_log: _Sourced
    jump_sd_log: _Sourced


class _SpreadBlock(_Strict):
    description: str = ""
    median_factor: _Sourced
    log_sd: _Sourced


class _HaircutBlock(_Strict):
    description: str = ""
    central: _Sourced
    low: _Sourced
    high: _Sourced


class _ScenarioBlock(_Strict):
    description: str
    source: str
    confidence: Literal["read", "derived", "memory", "assumption"]
    note: str | None = None
    anchors_cny_per_tco2e: dict[int, float]
    volatility_per_sqrt_year: _Sourced | None = None


class _PriceFile(_Strict):
    schema_version: Literal[1]
    base_year: int = Field(ge=2000, le=2100)
    start_price_cny_per_tco2e: _Sourced
    models: dict[str, _ModelBlock]
    local_spreads: dict[str, _SpreadBlock]
    liquidity_haircut: _HaircutBlock
    scenarios: dict[str, _ScenarioBlock]

    @field_validator("models")
    @classmethod
    def _has_cea(cls, v):
        if "cea" not in v:
            raise ValueError("models must include 'cea' (the reference price series)")
        return v


def _sources(obj: Any) -> set[str]:
    """All ``source`` strings in a nested YAML structure."""
    out: set[str] = set()
    if isinstance(obj, dict):
        if isinstance(obj.get("source"), str):
            out.add(obj["source"])
        for v in obj.values():
            out |= _sources(v)
    elif isinstance(obj, list):
        for v in obj:
            out |= _sources(v)
    return out


def reference_keys(region: str = "lishui") -> set[str]:
    """Keys of ``references:`` in the region parameter file (the allowed source keys)."""
    with open(resolve_parameter_path(region), encoding="utf-8") as fh:
        return set((load_yaml(fh) or {}).get("references", {}))


@dataclass(frozen=True)
class PriceModelSet:
    """The validated content of ``price_model.yaml``.

    Attributes
    ----------
    base_year : int
        Calendar year of t = 0.
    start_price_cny_per_tco2e : float
        Today's reference (CEA) price; :meth:`start_price` gives each series' own.
    models : dict[str, PriceModelParams]
        ``"cea"`` (reference) and others (``"pilot_ets"``).
    spreads : dict[str, LocalCreditSpread]
    liquidity_haircut : LiquidityHaircut
    scenarios : dict[str, PriceScenario]
    sha256, path : str
        Hash of the file bytes (for the audit block) and where it was read from.
    """

    base_year: int
    start_price_cny_per_tco2e: float
    models: Mapping[str, PriceModelParams]
    spreads: Mapping[str, LocalCreditSpread]
    liquidity_haircut: LiquidityHaircut
    scenarios: Mapping[str, PriceScenario]
    sha256: str
    path: str
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)
    #: series whose own start price differs from the reference's (``models.<name>.start_price_cny_per_tco2e``)
    start_prices: Mapping[str, float] = field(default_factory=dict)

    def start_price(self, name: str = "cea") -> float:
        """Today's price of series ``name`` (CNY/tCO2e): its own, else the reference (CEA) price."""
        self.model(name)  # an unknown name is refused
        return float(self.start_prices.get(name, self.start_price_cny_per_tco2e))

    def scenario(self, name: str) -> PriceScenario:
        try:
            return self.scenarios[name]
        except KeyError:
            raise PriceModelError(f"unknown price scenario {name!r}; known: {sorted(self.scenarios)}") from None

    def model(self, name: str = "cea") -> PriceModelParams:
        try:
            return self.models[name]
        except KeyError:
            raise PriceModelError(f"unknown price model {name!r}; known: {sorted(self.models)}") from None


def load_price_model(path: str | Path | None = None, *, region: str = "lishui") -> PriceModelSet:
    """Load and validate the price-model parameter file (default: the shipped one).

    Raises :class:`PriceModelError` naming the file and the field on any problem, including a source
    key that is not in ``references:`` of the region parameter file. The validated set is cached
    per process and reloaded when either file changes on disk.
    """
    p = Path(path) if path is not None else PRICE_MODEL_PATH
    stamp = data_file_stamp(p, region)
    return _load_price_model(p, region) if stamp is None else _load_price_model_cached(stamp)  # (None: its error)


@lru_cache(maxsize=16)
def _load_price_model_cached(stamp: tuple) -> "PriceModelSet":
    return _load_price_model(Path(stamp[0]), stamp[3])


def _load_price_model(p: Path, region: str) -> "PriceModelSet":
    try:
        raw, data = read_data_file(p, "price model file")
    except DataFileError as e:
        raise PriceModelError(str(e)) from None
    raw = raw or {}
    try:
        f = _PriceFile.model_validate(raw)
    except ValidationError as err:
        raise PriceModelError(format_validation_error(p, err, "price model file")) from None
    missing = _sources(raw) - reference_keys(region)
    if missing:
        raise PriceModelError(f"{p}: sources not listed under `references` of {region}: {sorted(missing)}")

    def build(where: str, fn, **kw):
        try:
            return fn(**kw)
        except PriceModelError as e:
            raise PriceModelError(f"{p}: {where}: {e}") from None

    models = {name: build(f"models.{name}", PriceModelParams,
                          long_run_price_cny_per_tco2e=b.long_run_price_cny_per_tco2e.value,
                          mean_reversion_per_year=b.mean_reversion_per_year.value,
                          volatility_per_sqrt_year=b.volatility_per_sqrt_year.value,
                          jump_intensity_per_year=b.jump_intensity_per_year.value,
                          jump_mean_log=b.jump_mean_log.value, jump_sd_log=b.jump_sd_log.value)
              for name, b in f.models.items()}
    spreads = {name: build(f"local_spreads.{name}", LocalCreditSpread, name=name,
                           median_factor=b.median_factor.value, log_sd=b.log_sd.value, description=b.description)
               for name, b in f.local_spreads.items()}
    h = f.liquidity_haircut
    haircut = build("liquidity_haircut", LiquidityHaircut, central=h.central.value, low=h.low.value, high=h.high.value)
    scenarios = {}
    for name, s in f.scenarios.items():
        yrs = sorted(s.anchors_cny_per_tco2e)
        scenarios[name] = build(
            f"scenarios.{name}", PriceScenario, name=name, description=s.description, source=s.source,
            confidence=s.confidence, anchor_years=tuple(float(y) for y in yrs),
            anchor_prices_cny_per_tco2e=tuple(float(s.anchors_cny_per_tco2e[y]) for y in yrs),
            volatility_per_sqrt_year=None if s.volatility_per_sqrt_year is None else s.volatility_per_sqrt_year.value,
            note=s.note)
        if yrs[0] > f.base_year:
            raise PriceModelError(f"{p}: scenarios.{name}: first anchor {yrs[0]} is after base_year {f.base_year}")
    if not f.start_price_cny_per_tco2e.value > 0:
        raise PriceModelError(f"{p}: start_price_cny_per_tco2e must be > 0")
    starts = {name: b.start_price_cny_per_tco2e.value for name, b in f.models.items()
              if b.start_price_cny_per_tco2e is not None}
    bad = [n for n, v in starts.items() if not v > 0]
    if bad:
        raise PriceModelError(f"{p}: models.{bad[0]}.start_price_cny_per_tco2e must be > 0")
    return PriceModelSet(base_year=f.base_year, start_price_cny_per_tco2e=f.start_price_cny_per_tco2e.value,
                         models=models, spreads=spreads, liquidity_haircut=haircut, scenarios=scenarios,
                         sha256=hashlib.sha256(data).hexdigest(), path=str(p), raw=raw, start_prices=starts)


_PRICE_COLUMNS = ("series", "date", "price_cny_per_tco2e", "kind", "source", "confidence", "note")
# kinds that are a price at a date (averages and range ends are not)
POINT_KINDS: tuple[str, ...] = ("first_trade", "close", "approx", "record_high", "range_mid")


def load_reference_prices(path: str | Path | None = None, *, region: str = "lishui") -> pd.DataFrame:
    """The public reference prices (``carbon_prices.csv``), validated.

    Columns: series, date (datetime64), price_cny_per_tco2e, kind, source, confidence, note.
    """
    p = Path(path) if path is not None else REFERENCE_PRICES_PATH
    try:
        df = pd.read_csv(p, dtype={"series": str, "kind": str, "source": str, "confidence": str, "note": str})
    except (OSError, pd.errors.ParserError) as e:
        raise PriceModelError(f"cannot read reference prices {p}: {e}") from None
    missing = [c for c in _PRICE_COLUMNS if c not in df.columns]
    if missing:
        raise PriceModelError(f"{p}: missing columns {missing}")
    try:
        df["date"] = pd.to_datetime(df["date"], format="%Y-%m-%d")
    except (ValueError, TypeError) as e:
        raise PriceModelError(f"{p}: column date must be YYYY-MM-DD: {e}") from None
    price = pd.to_numeric(df["price_cny_per_tco2e"], errors="coerce")
    bad = ~(np.isfinite(price) & (price > 0))
    if bad.any():
        raise PriceModelError(f"{p}: price_cny_per_tco2e must be a positive number (rows {list(df.index[bad] + 2)})")
    df["price_cny_per_tco2e"] = price.astype(float)
    bad = ~df["confidence"].isin(CONFIDENCE_LABELS)
    if bad.any():
        raise PriceModelError(f"{p}: confidence must be one of {CONFIDENCE_LABELS} (rows {list(df.index[bad] + 2)})")
    unknown = set(df["source"]) - reference_keys(region)
    if unknown:
        raise PriceModelError(f"{p}: sources not listed under `references` of {region}: {sorted(unknown)}")
    return df


def reference_price_history(series: str = "CEA", kinds: Sequence[str] = POINT_KINDS,
                            prices: pd.DataFrame | None = None) -> pd.DataFrame:
    """Dated price points of one series, for calibration: DataFrame[date, price], one row per date.

    Averages and range ends are excluded (``kinds``); when two point kinds share a date the first
    in ``kinds`` order wins (e.g. the first trade over the opening reference).
    """
    df = load_reference_prices() if prices is None else prices
    sub = df[(df["series"] == series) & df["kind"].isin(kinds)].copy()
    if sub.empty:
        raise PriceModelError(f"no reference price points for series {series!r} with kinds {list(kinds)}")
    sub["_rank"] = sub["kind"].map({k: i for i, k in enumerate(kinds)})
    sub = sub.sort_values(["date", "_rank"]).drop_duplicates("date", keep="first")
    return sub[["date", "price_cny_per_tco2e"]].rename(columns={"price_cny_per_tco2e": "price"}).reset_index(drop=True)


# =====================================================================================================
# Calibration
# =====================================================================================================
@dataclass(frozen=True)
class PriceFitReport:
    """Result of :func:`calibrate_price_model`.

    ``estimates`` and ``standard_errors`` are keyed by ``mu_log``, ``long_run_price_cny_per_tco2e``,
    ``mean_reversion_per_year``, ``volatility_per_sqrt_year`` and, for the jump model,
    ``jump_intensity_per_year``, ``jump_mean_log``, ``jump_sd_log``. Standard errors are from the inverse
    observed information (numerical Hessian of the log-likelihood); NaN when it is not positive definite.
    """

    method: str
    n_observations: int
    span_years: float
    estimates: Mapping[str, float]
    standard_errors: Mapping[str, float]
    log_likelihood: float
    converged: bool
    notes: tuple[str, ...]

    def to_text(self) -> str:
        lines = [f"price model fit: {self.method}; {self.n_observations} observations over {self.span_years:.2f} yr; "
                 f"log-likelihood {self.log_likelihood:.3f}; converged={self.converged}"]
        for k, v in self.estimates.items():
            se = self.standard_errors.get(k, float("nan"))
            lines.append(f"  {k:32s} {v:12.5g}  (se {se:.3g})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


_NAMES_OU = ("mu_log", "mean_reversion_per_year", "volatility_per_sqrt_year")
_NAMES_JUMP = _NAMES_OU + ("jump_intensity_per_year", "jump_mean_log", "jump_sd_log")
_K_MIN, _K_MAX = 1e-6, 100.0


def _history_arrays(history: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(history, pd.DataFrame):
        raise PriceModelError("history must be a DataFrame with columns date and price")
    pcol = "price" if "price" in history.columns else "price_cny_per_tco2e"
    if "date" not in history.columns or pcol not in history.columns:
        raise PriceModelError(f"history needs columns 'date' and 'price' (or 'price_cny_per_tco2e'), got {list(history.columns)}")
    d = pd.to_datetime(history["date"])
    order = np.argsort(d.values, kind="stable")
    d = d.iloc[order]
    price = np.asarray(history[pcol], dtype=float)[order]
    if not np.all(np.isfinite(price)) or np.any(price <= 0):
        raise PriceModelError("history prices must be finite and > 0")
    t = (d - d.iloc[0]).dt.total_seconds().to_numpy() / (86400.0 * DAYS_PER_YEAR)
    if np.any(np.diff(t) <= 0):
        raise PriceModelError("history has duplicate dates; keep one price per date")
    return t, np.log(price)


def _ou_nll(theta_nat: np.ndarray, x: np.ndarray, dt: np.ndarray) -> float:
    mu, k, s = theta_nat[:3]
    if k <= 0 or s <= 0:
        return np.inf
    a = np.exp(-k * dt)
    v = s * s * (-np.expm1(-2 * k * dt)) / (2 * k)
    r = x[1:] - mu - (x[:-1] - mu) * a
    return float(0.5 * np.sum(np.log(2 * np.pi * v) + r * r / v))


def _jump_nll(theta_nat: np.ndarray, x: np.ndarray, dt: np.ndarray, n_max: int) -> float:
    """Poisson mixture of Gaussians; each jump's decay within the step is moment-matched (exact as k dt -> 0).

    The mixture is truncated where the Poisson tail is below 1e-12 (at most ``n_max`` jumps per interval).
    """
    mu, k, s, lam, m, sj = theta_nat
    if k <= 0 or s <= 0 or lam < 0 or sj <= 0:
        return np.inf
    a = np.exp(-k * dt)
    v0 = s * s * (-np.expm1(-2 * k * dt)) / (2 * k)
    a1 = -np.expm1(-k * dt) / (k * dt)            # E[exp(-k (dt - tau))], tau ~ U(0, dt)
    a2 = -np.expm1(-2 * k * dt) / (2 * k * dt)    # E[exp(-2 k (dt - tau))]
    mj = m * a1
    vj = (m * m + sj * sj) * a2 - mj * mj
    r = x[1:] - mu - (x[:-1] - mu) * a
    lam_dt = lam * dt
    n_top = int(min(n_max, max(2, stats.poisson.ppf(1 - 1e-12, float(lam_dt.max())))))
    n = np.arange(n_top + 1, dtype=float)[None, :]
    var = v0[:, None] + n * vj[:, None]
    dev = r[:, None] - n * mj[:, None]
    ll = (n * np.log(np.maximum(lam_dt, 1e-300))[:, None] - gammaln(n + 1.0)
          - 0.5 * (np.log(2 * np.pi * var) + dev * dev / var))
    top = ll.max(axis=1)
    return float(-np.sum(top + np.log(np.exp(ll - top[:, None]).sum(axis=1)) - lam_dt))


def _hessian(fun, x0: np.ndarray) -> np.ndarray:
    """Central-difference Hessian with relative steps."""
    n = x0.size
    h = 1e-4 * np.maximum(np.abs(x0), 1e-2)
    H = np.empty((n, n))
    f0 = fun(x0)
    for i in range(n):
        ei = np.zeros(n)
        ei[i] = h[i]
        H[i, i] = (fun(x0 + ei) - 2 * f0 + fun(x0 - ei)) / h[i] ** 2
        for j in range(i + 1, n):
            ej = np.zeros(n)
            ej[j] = h[j]
            H[i, j] = H[j, i] = (fun(x0 + ei + ej) - fun(x0 + ei - ej) - fun(x0 - ei + ej) + fun(x0 - ei - ej)) \
                / (4 * h[i] * h[j])
    return H


def _standard_errors(fun, theta: np.ndarray) -> tuple[np.ndarray, bool]:
    H = _hessian(fun, theta)
    if not np.all(np.isfinite(H)):
        return np.full(theta.size, np.nan), False
    try:
        np.linalg.cholesky(H)
        cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return np.full(theta.size, np.nan), False
    return np.sqrt(np.diag(cov)), True


def _ar1_start(x: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Exact-AR(1) regression start values (mean spacing)."""
    h = float(np.mean(dt))
    X, Y = x[:-1], x[1:]
    if X.size >= 2 and np.var(X) > 0:
        b, c = np.polyfit(X, Y, 1)
    else:
        b, c = 0.5, 0.5 * float(np.mean(x))
    b = float(np.clip(b, 0.05, 0.999))
    k = -math.log(b) / h
    mu = c / (1 - b)
    if not math.isfinite(mu) or abs(mu - np.mean(x)) > 5:
        mu = float(np.mean(x))
    resid = Y - c - b * X
    sd = float(np.std(resid)) if resid.size > 1 else 0.3 * math.sqrt(h)
    s = max(sd, 1e-4) * math.sqrt(2 * k / (1 - b * b))
    return np.array([mu, k, s])


def calibrate_price_model(history: pd.DataFrame, *, jumps: bool | Literal["auto"] = "auto",
                          min_obs_for_jumps: int = 100) -> tuple[PriceModelParams, PriceFitReport]:
    """Maximum-likelihood fit of the log-price model to a dated price history.

    Parameters
    ----------
    history : DataFrame
        Columns ``date`` and ``price`` (or ``price_cny_per_tco2e``), CNY/tCO2e; irregular spacing is
        fine (the exact OU transition over each gap is used).
    jumps : bool or "auto"
        Fit the OU-jump model (True), the OU model only (False), or the jump model only when there are
        at least ``min_obs_for_jumps`` observations ("auto").

    Returns
    -------
    params : PriceModelParams
        With ``steps_per_year = 1``; jump fields zero for the OU-only fit.
    report : PriceFitReport

    Notes
    -----
    OU only: exact Gaussian transition likelihood (the exact AR(1) model on a regular grid; its
    regression gives the start values). OU-jump: the transition density is a Poisson mixture of
    Gaussians in which each jump's within-step decay is replaced by its first two moments; this is
    exact as ``kappa * dt -> 0`` and very close for weekly or daily data. Standard errors come from the
    numerical Hessian of the negative log-likelihood at the optimum.
    """
    t, x = _history_arrays(history)
    n = x.size
    if n < 4:
        raise PriceModelError(f"history needs at least 4 dated prices to fit 3 parameters, got {n}")
    dt = np.diff(t)
    use_jumps = (n >= min_obs_for_jumps) if jumps == "auto" else bool(jumps)
    notes: list[str] = []
    if use_jumps and n < 30:
        raise PriceModelError(f"the jump model needs many more than {n} observations; use jumps=False")
    if not use_jumps and jumps == "auto":
        notes.append(f"only {n} observations (< {min_obs_for_jumps}): OU model without jumps, exact "
                     "Gaussian transition likelihood; jumps are not identifiable from so few points")
    if n < 30:
        notes.append(f"few points ({n - 1} transitions over {t[-1]:.2f} yr): estimates are very uncertain; "
                     "use them as an order of magnitude, not as defaults")

    start = _ar1_start(x, dt)
    # optimise on (mu, ln k, ln s[, ln lam, m, ln sj])
    def ou_obj(z):
        return _ou_nll(np.array([z[0], math.exp(z[1]), math.exp(z[2])]), x, dt)

    lo_k, hi_k = math.log(_K_MIN), math.log(_K_MAX)
    bounds_ou = [(float(np.min(x)) - 5, float(np.max(x)) + 5), (lo_k, hi_k), (math.log(1e-6), math.log(10.0))]
    z0 = np.array([start[0], math.log(np.clip(start[1], 2 * _K_MIN, _K_MAX / 2)), math.log(start[2])])
    res = optimize.minimize(ou_obj, z0, method="L-BFGS-B", bounds=bounds_ou)
    best = res
    if not use_jumps:
        # a second start from the sample mean, slow reversion: guards against a local optimum
        z1 = np.array([float(np.mean(x)), math.log(0.5), z0[2]])
        res1 = optimize.minimize(ou_obj, z1, method="L-BFGS-B", bounds=bounds_ou)
        if res1.fun < best.fun:
            best = res1
        theta = np.array([best.x[0], math.exp(best.x[1]), math.exp(best.x[2])])
        names = _NAMES_OU
        nll = lambda th: _ou_nll(th, x, dt)  # noqa: E731
        method = "ou_exact_mle"
    else:
        ou = np.array([best.x[0], math.exp(best.x[1]), math.exp(best.x[2])])
        a = np.exp(-ou[1] * dt)
        v = ou[2] ** 2 * (-np.expm1(-2 * ou[1] * dt)) / (2 * ou[1])
        r = (x[1:] - ou[0] - (x[:-1] - ou[0]) * a) / np.sqrt(v)
        big = np.abs(r) > 3.0
        span = float(t[-1])
        lam0 = max(int(big.sum()), 1) / span
        raw_r = (x[1:] - ou[0] - (x[:-1] - ou[0]) * a)
        m0 = float(np.mean(raw_r[big])) if big.any() else 0.0
        sj0 = float(np.std(raw_r[big])) if big.sum() > 1 else 3 * ou[2] * math.sqrt(float(np.mean(dt)))
        sj0 = max(sj0, 1e-3)
        lam_max = 0.5 / float(np.median(dt))
        n_max = int(min(30, max(3, stats.poisson.ppf(1 - 1e-12, lam_max * float(np.max(dt))))))
        s_diff = ou[2]

        def jump_obj(z):
            th = np.array([z[0], math.exp(z[1]), math.exp(z[2]), math.exp(z[3]), z[4], math.exp(z[5])])
            return _jump_nll(th, x, dt, n_max)

        bounds = bounds_ou + [(math.log(1e-3), math.log(lam_max)), (-3.0, 3.0), (math.log(1e-3), math.log(5.0))]
        best = None
        for lam_s, sig_scale in ((lam0, 0.8), (3 * lam0, 0.6)):
            zz = np.array([ou[0], math.log(np.clip(ou[1], 2 * _K_MIN, _K_MAX / 2)), math.log(sig_scale * s_diff),
                           math.log(np.clip(lam_s, 2e-3, 0.9 * lam_max)), m0, math.log(sj0)])
            r_ = optimize.minimize(jump_obj, zz, method="L-BFGS-B", bounds=bounds)
            if best is None or r_.fun < best.fun:
                best = r_
        z = best.x
        theta = np.array([z[0], math.exp(z[1]), math.exp(z[2]), math.exp(z[3]), z[4], math.exp(z[5])])
        names = _NAMES_JUMP
        nll = lambda th: _jump_nll(th, x, dt, n_max)  # noqa: E731
        method = "ou_jump_mle"
        if n_max >= 30:
            notes.append("jump mixture truncated at 30 jumps per interval")

    se, pd_ok = _standard_errors(nll, theta)
    if not pd_ok:
        notes.append("observed information not positive definite (flat or boundary likelihood): standard errors unavailable")
    k_hat = theta[1]
    if k_hat <= 10 * _K_MIN:
        notes.append("mean reversion not identified: kappa at its lower bound (the data look like a random walk); "
                     "the long-run level is then meaningless")
    if k_hat >= 0.9 * _K_MAX:
        notes.append("kappa at its upper bound: the points look independent around a level")
    est = dict(zip(names, (float(v) for v in theta)))
    ses = dict(zip(names, (float(v) for v in se)))
    est["long_run_price_cny_per_tco2e"] = math.exp(est["mu_log"])
    ses["long_run_price_cny_per_tco2e"] = est["long_run_price_cny_per_tco2e"] * ses["mu_log"]  # delta method
    if "mean_reversion_per_year" in est and math.isfinite(ses["mean_reversion_per_year"]):
        rel = ses["mean_reversion_per_year"] / est["mean_reversion_per_year"]
        if rel > 0.5:
            notes.append(f"kappa has a relative standard error of {rel:.0%}: the half-life is essentially unknown")
    params = PriceModelParams(
        long_run_price_cny_per_tco2e=est["long_run_price_cny_per_tco2e"],
        mean_reversion_per_year=float(np.clip(est["mean_reversion_per_year"], 0, 100)),
        volatility_per_sqrt_year=float(min(est["volatility_per_sqrt_year"], 5.0)),
        jump_intensity_per_year=est.get("jump_intensity_per_year", 0.0),
        jump_mean_log=est.get("jump_mean_log", 0.0),
        jump_sd_log=est.get("jump_sd_log", 0.0),
    )
    report = PriceFitReport(method=method, n_observations=int(n), span_years=float(t[-1]), estimates=est,
                            standard_errors=ses, log_likelihood=-float(best.fun), converged=bool(best.success),
                            notes=tuple(notes))
    return params, report


__all__ = [
    "DATA_DIR", "LiquidityHaircut", "LocalCreditSpread", "POINT_KINDS", "PriceFitReport", "PriceModelError",
    "PriceModelParams", "PriceModelSet", "PriceScenario", "PriceShocks", "calibrate_price_model", "forced_sale_value",
    "load_price_model", "load_reference_prices", "local_credit_price", "log_price_moments",
    "deviation_log_mean_exp", "price_shocks", "reference_price_history", "simulate_price_paths", "simulate_price_paths_by_volatility",
    "simulate_scenario_paths", "simulate_scenario_paths_by_volatility", "time_grid_years",
]


if __name__ == "__main__":  # pragma: no cover - a fit report on the shipped CEA points
    _p, _r = calibrate_price_model(reference_price_history("CEA"))
    print(_r.to_text())
