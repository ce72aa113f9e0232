"""Maximum-likelihood fits of loss frequency and severity, with goodness of fit.

* :func:`fit_poisson` -- Poisson regression of event counts with an exposure offset
  (``log E[N] = log(exposure) + b0 + x'b``), fitted with :class:`sklearn.linear_model.PoissonRegressor`
  (rate ``N/exposure`` with sample weight ``exposure``, which has the same likelihood as the
  offset model); standard errors from the Fisher information ``(D' diag(mu) D)^-1``.
* :func:`fit_beta` -- beta MLE of loss fractions (scipy.stats), Fisher-information standard errors.
* :func:`fit_lognormal` -- lognormal MLE of areas (closed form), standard errors ``s/sqrt(n)`` and
  ``s/sqrt(2n)``.

Goodness of fit: deviance, null deviance, ``D^2 = 1 - deviance/null deviance``, McFadden pseudo-R2,
AIC, Pearson dispersion and observed-vs-expected count frequencies for the Poisson model; log
likelihood, AIC and the Kolmogorov-Smirnov statistic and p-value for severities (the p-value is
optimistic because the parameters were estimated from the same data).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.special import gammaln, polygamma, xlogy
from sklearn.linear_model import PoissonRegressor


class FitError(ValueError):
    """The data cannot support the requested fit (too few or invalid observations)."""


@dataclass(frozen=True)
class PoissonFit:
    """Poisson regression with an exposure offset.

    ``intercept`` is per unit of exposure (e.g. per ha-year): the expected count of a row is
    ``exposure * exp(intercept + X @ coef)``.
    """

    intercept: float
    coef: tuple[float, ...]
    covariates: tuple[str, ...]
    se_intercept: float
    se_coef: tuple[float, ...]
    n_obs: int
    total_count: int
    total_exposure: float
    log_likelihood: float
    null_log_likelihood: float
    deviance: float
    null_deviance: float
    d2: float
    mcfadden_r2: float
    aic: float
    pearson_dispersion: float
    count_table: tuple[tuple[str, int, float], ...]  # (count bin, observed rows, expected rows)
    expected: np.ndarray = field(repr=False, compare=False, default=None)

    def linear_predictor(self, X: np.ndarray | None) -> np.ndarray:
        """``intercept + X @ coef`` per row (log rate per unit exposure)."""
        if not self.coef:
            n = 1 if X is None else len(X)
            return np.full(n, self.intercept)
        return self.intercept + np.asarray(X, float) @ np.asarray(self.coef)

    def to_dict(self) -> dict:
        return {
            "intercept_log_rate_per_unit_exposure": self.intercept, "se_intercept": self.se_intercept,
            "coefficients": dict(zip(self.covariates, self.coef)),
            "se_coefficients": dict(zip(self.covariates, self.se_coef)),
            "n_obs": self.n_obs, "total_count": self.total_count, "total_exposure": self.total_exposure,
            "log_likelihood": self.log_likelihood, "null_log_likelihood": self.null_log_likelihood,
            "deviance": self.deviance, "null_deviance": self.null_deviance, "d2": self.d2,
            "mcfadden_r2": self.mcfadden_r2, "aic": self.aic, "pearson_dispersion": self.pearson_dispersion,
            "observed_vs_expected": [{"count": c, "observed": o, "expected": e} for c, o, e in self.count_table],
        }


def _poisson_loglik(y: np.ndarray, mu: np.ndarray) -> float:
    return float(np.sum(xlogy(y, mu) - mu - gammaln(y + 1)))


def _poisson_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    return float(2 * np.sum(xlogy(y, y / mu) - (y - mu)))


def fit_poisson(counts, exposure, X=None, covariates: tuple[str, ...] = (), max_count_bin: int = 4) -> PoissonFit:
    """Fit ``N ~ Poisson(exposure * exp(b0 + X b))`` by maximum likelihood.

    Parameters
    ----------
    counts : array of int, shape (n,)
        Event counts per row (e.g. fires per county-year).
    exposure : array of float, shape (n,)
        Exposure per row (e.g. forest area in ha for one year), > 0.
    X : array, shape (n, k), optional
        Covariates; none for an intercept-only (constant-rate) model.
    covariates : tuple of str
        Names of the columns of ``X``.
    max_count_bin : int
        Counts >= this are pooled in the observed-vs-expected table.
    """
    y = np.asarray(counts, dtype=float)
    e = np.asarray(exposure, dtype=float)
    if y.ndim != 1 or e.shape != y.shape:
        raise FitError("counts and exposure must be 1-d arrays of the same length")
    if y.size < 2:
        raise FitError(f"a Poisson fit needs at least 2 rows, got {y.size}")
    if np.any(y < 0) or np.any(y != np.round(y)):
        raise FitError("counts must be non-negative whole numbers")
    if np.any(~np.isfinite(e)) or np.any(e <= 0):
        raise FitError("exposure must be finite and > 0 in every row")
    if y.sum() == 0:
        raise FitError("no events: the rate cannot be estimated (it is 0 with no information)")
    k = 0 if X is None else np.asarray(X).shape[1]
    scale = float(e.mean())
    w = e / scale
    if k == 0:
        b0 = float(np.log(y.sum() / w.sum()))
        coef = np.empty(0)
        Xa = np.empty((y.size, 0))
    else:
        Xa = np.asarray(X, dtype=float)
        if Xa.shape != (y.size, k) or not np.all(np.isfinite(Xa)):
            raise FitError("covariates must be finite, one row per count")
        if np.any(Xa.std(axis=0) == 0):
            raise FitError(f"a covariate is constant: {[c for c, s in zip(covariates, Xa.std(axis=0)) if s == 0]}")
        model = PoissonRegressor(alpha=0.0, max_iter=10_000, tol=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(Xa, y / w, sample_weight=w)
        b0, coef = float(model.intercept_), np.asarray(model.coef_, dtype=float)
    mu = w * np.exp(b0 + Xa @ coef)
    D = np.column_stack([np.ones(y.size), Xa])
    info = D.T @ (D * mu[:, None])
    cov = np.linalg.inv(info)
    se = np.sqrt(np.diag(cov))
    mu0 = w * y.sum() / w.sum()
    ll, ll0 = _poisson_loglik(y, mu), _poisson_loglik(y, mu0)
    dev, dev0 = _poisson_deviance(y, mu), _poisson_deviance(y, mu0)
    table = []
    for j in range(max_count_bin):
        table.append((str(j), int(np.sum(y == j)), float(stats.poisson.pmf(j, mu).sum())))
    table.append((f">={max_count_bin}", int(np.sum(y >= max_count_bin)),
                  float(stats.poisson.sf(max_count_bin - 1, mu).sum())))
    dof = max(y.size - k - 1, 1)
    return PoissonFit(
        intercept=b0 - np.log(scale), coef=tuple(float(c) for c in coef), covariates=tuple(covariates),
        se_intercept=float(se[0]), se_coef=tuple(float(s) for s in se[1:]), n_obs=int(y.size),
        total_count=int(y.sum()), total_exposure=float(e.sum()), log_likelihood=ll, null_log_likelihood=ll0,
        deviance=dev, null_deviance=dev0, d2=1.0 - dev / dev0 if dev0 > 0 else 0.0,
        mcfadden_r2=1.0 - ll / ll0 if ll0 != 0 else 0.0, aic=2 * (k + 1) - 2 * ll,
        pearson_dispersion=float(np.sum((y - mu) ** 2 / mu) / dof), count_table=tuple(table), expected=mu)


@dataclass(frozen=True)
class SeverityFit:
    """A fitted severity distribution (``beta`` on (0, 1) or ``lognormal``) and its fit statistics.

    ``params``: beta ``{"a", "b"}``; lognormal ``{"mu", "sigma"}`` (of the natural log).
    """

    distribution: str
    params: dict[str, float]
    se: dict[str, float]
    n_obs: int
    mean: float
    variance: float
    log_likelihood: float
    aic: float
    ks_statistic: float
    ks_pvalue: float
    n_clipped: int = 0

    def to_dict(self) -> dict:
        return {"distribution": self.distribution, "params": dict(self.params), "se": dict(self.se),
                "n_obs": self.n_obs, "mean": self.mean, "variance": self.variance,
                "log_likelihood": self.log_likelihood, "aic": self.aic, "ks_statistic": self.ks_statistic,
                "ks_pvalue": self.ks_pvalue, "n_clipped": self.n_clipped}

    def uniform_range(self) -> tuple[float, float]:
        """The uniform range with the same mean and variance (``m -/+ sqrt(3 v)``), clipped to [0, 1]
        for beta fits (the engine's ``SourcedRange`` parameters are uniform)."""
        half = float(np.sqrt(3.0 * self.variance))
        lo, hi = self.mean - half, self.mean + half
        if self.distribution == "beta":
            lo, hi = max(lo, 0.0), min(hi, 1.0)
        return lo, hi


def fit_beta(x, clip: float = 1e-4, min_obs: int = 5) -> SeverityFit:
    """Beta MLE of fractions in [0, 1] (values are clipped into ``[clip, 1 - clip]``)."""
    x = np.asarray(x, dtype=float)
    if x.size < min_obs:
        raise FitError(f"a beta fit needs at least {min_obs} loss fractions, got {x.size}")
    if np.any(~np.isfinite(x)) or np.any(x < 0) or np.any(x > 1):
        raise FitError("loss fractions must lie in [0, 1]")
    n_clipped = int(np.sum((x < clip) | (x > 1 - clip)))
    xc = np.clip(x, clip, 1 - clip)
    if np.ptp(xc) == 0:
        raise FitError("all loss fractions are equal: a beta distribution cannot be fitted")
    a, b, _, _ = stats.beta.fit(xc, floc=0, fscale=1)
    n = xc.size
    t_ab = polygamma(1, a + b)
    info = n * np.array([[polygamma(1, a) - t_ab, -t_ab], [-t_ab, polygamma(1, b) - t_ab]])
    se = np.sqrt(np.diag(np.linalg.inv(info)))
    ll = float(np.sum(stats.beta.logpdf(xc, a, b)))
    ks = stats.kstest(xc, "beta", args=(a, b))
    mean = a / (a + b)
    var = a * b / ((a + b) ** 2 * (a + b + 1))
    return SeverityFit("beta", {"a": float(a), "b": float(b)}, {"a": float(se[0]), "b": float(se[1])}, int(n),
                       float(mean), float(var), ll, 4 - 2 * ll, float(ks.statistic), float(ks.pvalue), n_clipped)


def fit_lognormal(x, min_obs: int = 5) -> SeverityFit:
    """Lognormal MLE of positive sizes (e.g. burned area in ha): ``mu``, ``sigma`` of ``log x``."""
    x = np.asarray(x, dtype=float)
    if x.size < min_obs:
        raise FitError(f"a lognormal fit needs at least {min_obs} values, got {x.size}")
    if np.any(~np.isfinite(x)) or np.any(x <= 0):
        raise FitError("areas must be finite and > 0")
    lx = np.log(x)
    mu, sigma = float(lx.mean()), float(lx.std())
    if sigma == 0:
        raise FitError("all areas are equal: a lognormal cannot be fitted")
    n = x.size
    ll = float(np.sum(stats.lognorm.logpdf(x, sigma, scale=np.exp(mu))))
    ks = stats.kstest(x, "lognorm", args=(sigma, 0, np.exp(mu)))
    mean = float(np.exp(mu + sigma**2 / 2))
    var = float((np.exp(sigma**2) - 1) * np.exp(2 * mu + sigma**2))
    return SeverityFit("lognormal", {"mu": mu, "sigma": sigma},
                       {"mu": sigma / np.sqrt(n), "sigma": sigma / np.sqrt(2 * n)}, int(n), mean, var, ll,
                       4 - 2 * ll, float(ks.statistic), float(ks.pvalue))


__all__ = ["FitError", "PoissonFit", "SeverityFit", "fit_beta", "fit_lognormal", "fit_poisson"]
