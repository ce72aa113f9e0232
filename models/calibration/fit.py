"""Maximum-likelihood fits of loss frequency and severity, with goodness of fit.

* :func:`fit_poisson` -- Poisson regression of event counts with an exposure offset
  (``log E[N] = log(exposure) + b0 + x'b``), fitted with :class:`sklearn.linear_model.PoissonRegressor`
  (rate ``N/exposure`` with sample weight ``exposure``, which has the same likelihood as the
  offset model); standard errors from the Fisher information ``(D' diag(mu) D)^-1``, multiplied by
  ``sqrt(Pearson dispersion)`` when the dispersion exceeds 1 (quasi-Poisson: over-dispersed counts).
* :func:`fit_beta` -- loss fractions in [0, 1]. By default a moment estimator: the sample mean and
  variance (the two numbers the engine's uniform ranges use), with the beta of those moments for the
  density; records at exactly 0 or 1 (a total loss) count as they are. Standard errors of the mean
  and variance from the sample's moments (``v/n``, ``(m4 - m2^2)/n``, covariance ``m3/n``), of the
  beta's ``a``, ``b`` by the delta method. ``method="mle"`` gives the beta MLE (records at 0 or 1
  clipped into the open interval, which moves the mean and variance; not used by the calibration).
* :func:`fit_lognormal` -- lognormal MLE of areas (closed form), standard errors ``s/sqrt(n)`` and
  ``s/sqrt(2n)``; of the mean and variance by the delta method.

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
    ``exposure * exp(intercept + X @ coef)``. ``se_intercept`` and ``se_coef`` are quasi-Poisson:
    the Fisher-information standard errors times ``se_scale = sqrt(max(1, pearson_dispersion))``.
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
    #: factor applied to the Fisher-information standard errors: sqrt(max(1, pearson_dispersion))
    se_scale: float = 1.0
    expected: np.ndarray = field(repr=False, compare=False, default=None)
    #: covariance of (intercept, coef...), quasi-Poisson scaled like the standard errors
    cov: np.ndarray = field(repr=False, compare=False, default=None)

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
            "se_scale": self.se_scale,
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
    dof = max(y.size - k - 1, 1)
    dispersion = float(np.sum((y - mu) ** 2 / mu) / dof)
    se_scale = float(np.sqrt(max(1.0, dispersion)))  # quasi-Poisson: over-dispersion widens the errors
    cov = np.linalg.inv(info) * se_scale**2
    se = np.sqrt(np.diag(cov))
    mu0 = w * y.sum() / w.sum()
    ll, ll0 = _poisson_loglik(y, mu), _poisson_loglik(y, mu0)
    dev, dev0 = _poisson_deviance(y, mu), _poisson_deviance(y, mu0)
    table = []
    for j in range(max_count_bin):
        table.append((str(j), int(np.sum(y == j)), float(stats.poisson.pmf(j, mu).sum())))
    table.append((f">={max_count_bin}", int(np.sum(y >= max_count_bin)),
                  float(stats.poisson.sf(max_count_bin - 1, mu).sum())))
    return PoissonFit(
        intercept=b0 - np.log(scale), coef=tuple(float(c) for c in coef), covariates=tuple(covariates),
        se_intercept=float(se[0]), se_coef=tuple(float(s) for s in se[1:]), n_obs=int(y.size),
        total_count=int(y.sum()), total_exposure=float(e.sum()), log_likelihood=ll, null_log_likelihood=ll0,
        deviance=dev, null_deviance=dev0, d2=1.0 - dev / dev0 if dev0 > 0 else 0.0,
        mcfadden_r2=1.0 - ll / ll0 if ll0 != 0 else 0.0, aic=2 * (k + 1) - 2 * ll,
        pearson_dispersion=dispersion, count_table=tuple(table), se_scale=se_scale, expected=mu, cov=cov)


@dataclass(frozen=True)
class SeverityFit:
    """A fitted severity distribution (``beta`` on [0, 1] or ``lognormal``) and its fit statistics.

    ``params``: beta ``{"a", "b"}``; lognormal ``{"mu", "sigma"}`` (of the natural log). ``method``:
    ``moments`` (beta by default: ``mean`` and ``variance`` are the sample's) or ``mle``.
    ``se_mean``, ``se_variance`` and ``cov_mean_variance`` are the sampling errors of ``mean`` and
    ``variance``. ``n_zero`` / ``n_one``: records at exactly 0 / 1 (beta only); ``n_clipped``: records
    the beta MLE moved into the open interval (0 for the moment estimator). For the moment beta,
    ``log_likelihood``, ``aic`` cover the records strictly inside (0, 1) (the beta has no mass at 0 or 1);
    the KS test uses every record, so a point mass of total losses shows in it.
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
    method: str = "mle"
    se_mean: float = float("nan")
    se_variance: float = float("nan")
    cov_mean_variance: float = 0.0
    n_zero: int = 0
    n_one: int = 0

    def to_dict(self) -> dict:
        lo, hi = self.uniform_range()
        se_lo, se_hi = self.uniform_range_se()
        return {"distribution": self.distribution, "method": self.method, "params": dict(self.params),
                "se": dict(self.se), "n_obs": self.n_obs, "mean": self.mean, "se_mean": self.se_mean,
                "variance": self.variance, "se_variance": self.se_variance,
                "log_likelihood": self.log_likelihood, "aic": self.aic, "ks_statistic": self.ks_statistic,
                "ks_pvalue": self.ks_pvalue, "n_clipped": self.n_clipped, "n_zero": self.n_zero,
                "n_one": self.n_one, "uniform_range": [lo, hi], "uniform_range_se": [se_lo, se_hi]}

    # ---- the engine's uniform range ----------------------------------------------------------
    def _half_width(self) -> tuple[float, float]:
        """Half-width of the uniform range and the bound that limits it (``sqrt(3 v)``: none)."""
        half = float(np.sqrt(3.0 * self.variance))
        limits = [(half, "")]
        limits.append((self.mean, "0"))  # the range may not start below 0
        if self.distribution == "beta":
            limits.append((1.0 - self.mean, "1"))  # nor end above 1
        return min(limits, key=lambda t: t[0])

    def uniform_range(self) -> tuple[float, float]:
        """The uniform range ``m -/+ h`` with the fitted mean ``m`` (the engine's ``SourcedRange``
        parameters are uniform).

        ``h = sqrt(3 v)`` keeps the variance ``v`` too; where that range would leave [0, 1] (a beta) or
        [0, inf) (a lognormal), ``h`` is cut to ``m`` (range ``[0, 2m]``) or ``1 - m`` (``[2m - 1, 1]``):
        the mean is still kept, the variance falls to ``h^2 / 3`` (:meth:`uniform_description`).
        """
        half, _ = self._half_width()
        return self.mean - half, self.mean + half

    def uniform_range_se(self) -> tuple[float, float]:
        """Standard errors of :meth:`uniform_range`'s ends (delta method from the mean and variance's;
        a bound the range is cut at is exact)."""
        half, bound = self._half_width()
        if bound == "0":
            return 0.0, 2.0 * self.se_mean
        if bound == "1":
            return 2.0 * self.se_mean, 0.0
        dh = np.sqrt(3.0) / (2.0 * np.sqrt(self.variance))  # d h / d v
        base = self.se_mean**2 + dh**2 * self.se_variance**2
        cross = 2.0 * dh * self.cov_mean_variance
        return float(np.sqrt(max(base - cross, 0.0))), float(np.sqrt(max(base + cross, 0.0)))

    def uniform_description(self) -> str:
        """What the uniform range keeps, for the parameter note."""
        lo, hi = self.uniform_range()
        se_lo, se_hi = self.uniform_range_se()
        half, bound = self._half_width()
        head = f"uniform {lo:.4g}-{hi:.4g} (se {se_lo:.2g}, {se_hi:.2g})"
        if not bound:
            return f"{head}: the fitted mean {self.mean:.4g} and variance {self.variance:.4g} (sd {np.sqrt(self.variance):.4g})"
        where, edge = ("[0, 2 x mean]", "start below 0") if bound == "0" else ("[2 x mean - 1, 1]", "end above 1")
        h = np.sqrt(3 * self.variance)
        return (f"{head}: keeps the fitted mean {self.mean:.4g} only. The range with the fitted variance too, "
                f"mean -/+ sqrt(3 var) = {self.mean - h:.4g} to {self.mean + h:.4g}, would {edge}, so the range is "
                f"{where}: its variance {half**2 / 3:.4g} (sd {half / np.sqrt(3):.4g}) is below the fitted "
                f"{self.variance:.4g} (sd {np.sqrt(self.variance):.4g})")


def _check_fractions(x, min_obs: int) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.size < min_obs:
        raise FitError(f"a beta fit needs at least {min_obs} loss fractions, got {x.size}")
    if np.any(~np.isfinite(x)) or np.any(x < 0) or np.any(x > 1):
        raise FitError("loss fractions must lie in [0, 1]")
    if np.ptp(x) == 0:
        raise FitError("all loss fractions are equal: a beta distribution cannot be fitted")
    return x


def _sample_moments(x: np.ndarray) -> tuple[float, float, float, float, float]:
    """Mean, unbiased variance and their standard errors and covariance (large-sample, from the
    sample's central moments: ``Var(mean) = v/n``, ``Var(var) = (m4 - m2^2)/n``, ``Cov = m3/n``)."""
    n = x.size
    m = float(x.mean())
    d = x - m
    m2, m3, m4 = float(np.mean(d**2)), float(np.mean(d**3)), float(np.mean(d**4))
    v = m2 * n / (n - 1)
    return m, v, float(np.sqrt(v / n)), float(np.sqrt(max(m4 - m2**2, 0.0) / n)), m3 / n


def fit_beta(x, clip: float = 1e-4, min_obs: int = 5, *, method: str = "moments") -> SeverityFit:
    """Loss fractions in [0, 1]: their mean and variance, and the beta distribution with them.

    Parameters
    ----------
    x : array of float in [0, 1]
    clip : float
        ``mle`` only: values are clipped into ``[clip, 1 - clip]``.
    min_obs : int
        Fewest values accepted.
    method : ``"moments"`` (default) or ``"mle"``
        ``moments``: ``mean`` and ``variance`` are the sample's (records at 0 or 1 included as they
        are: the engine uses only these two numbers), ``a = m k``, ``b = (1 - m) k`` with
        ``k = m (1 - m) / v - 1``, standard errors by the delta method. ``mle``: beta maximum
        likelihood on the values clipped into ``[clip, 1 - clip]`` (moves mean and variance when
        records sit at 0 or 1), Fisher-information standard errors.
    """
    x = _check_fractions(x, min_obs)
    n = x.size
    n_zero, n_one = int(np.sum(x == 0)), int(np.sum(x == 1))
    if method == "moments":
        m, v, se_m, se_v, cov_mv = _sample_moments(x)
        if v >= m * (1 - m):
            raise FitError(f"loss fractions with mean {m:.4g} and variance {v:.4g} (nearly all at 0 or 1): "
                           "no beta distribution has them")
        k = m * (1 - m) / v - 1
        a, b = m * k, (1 - m) * k
        J = np.array([[k + m * (1 - 2 * m) / v, -m * m * (1 - m) / v**2],
                      [-k + (1 - m) * (1 - 2 * m) / v, -m * (1 - m) ** 2 / v**2]])
        S = np.array([[se_m**2, cov_mv], [cov_mv, se_v**2]])
        se = np.sqrt(np.diag(J @ S @ J.T))
        inner = x[(x > 0) & (x < 1)]
        ll = float(np.sum(stats.beta.logpdf(inner, a, b)))
        ks = stats.kstest(x, "beta", args=(a, b))
        return SeverityFit("beta", {"a": float(a), "b": float(b)}, {"a": float(se[0]), "b": float(se[1])}, int(n),
                           m, v, ll, 4 - 2 * ll, float(ks.statistic), float(ks.pvalue), 0, "moments",
                           se_m, se_v, cov_mv, n_zero, n_one)
    if method != "mle":
        raise ValueError(f"method must be 'moments' or 'mle', not {method!r}")
    n_clipped = int(np.sum((x < clip) | (x > 1 - clip)))
    xc = np.clip(x, clip, 1 - clip)
    a, b, _, _ = stats.beta.fit(xc, floc=0, fscale=1)
    t_ab = polygamma(1, a + b)
    info = n * np.array([[polygamma(1, a) - t_ab, -t_ab], [-t_ab, polygamma(1, b) - t_ab]])
    cov_ab = np.linalg.inv(info)
    se = np.sqrt(np.diag(cov_ab))
    ll = float(np.sum(stats.beta.logpdf(xc, a, b)))
    ks = stats.kstest(xc, "beta", args=(a, b))
    mean = a / (a + b)
    var = a * b / ((a + b) ** 2 * (a + b + 1))
    # delta method for the mean and variance of the fitted beta
    s = a + b
    g_m = np.array([b / s**2, -a / s**2])
    # var = a b / (s^2 (s + 1)): d/da = b / (s^2 (s + 1)) - a b (3 s + 2) / (s^3 (s + 1)^2), and alike for b
    g_v = np.array([b / (s**2 * (s + 1)) - a * b * (3 * s + 2) / (s**3 * (s + 1) ** 2),
                    a / (s**2 * (s + 1)) - a * b * (3 * s + 2) / (s**3 * (s + 1) ** 2)])
    return SeverityFit("beta", {"a": float(a), "b": float(b)}, {"a": float(se[0]), "b": float(se[1])}, int(n),
                       float(mean), float(var), ll, 4 - 2 * ll, float(ks.statistic), float(ks.pvalue), n_clipped,
                       "mle", float(np.sqrt(g_m @ cov_ab @ g_m)), float(np.sqrt(g_v @ cov_ab @ g_v)),
                       float(g_m @ cov_ab @ g_v), n_zero, n_one)


def fit_lognormal(x, min_obs: int = 5) -> SeverityFit:
    """Lognormal MLE of positive sizes (e.g. burned area in ha): ``mu``, ``sigma`` of ``log x``; the
    mean's and variance's standard errors by the delta method."""
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
    var_mu, var_sigma = sigma**2 / n, sigma**2 / (2 * n)  # independent
    g_m = np.array([mean, mean * sigma])
    g_v = np.array([2 * var, 2 * sigma * np.exp(2 * mu + sigma**2) * (2 * np.exp(sigma**2) - 1)])
    cov = np.diag([var_mu, var_sigma])
    return SeverityFit("lognormal", {"mu": mu, "sigma": sigma},
                       {"mu": sigma / np.sqrt(n), "sigma": sigma / np.sqrt(2 * n)}, int(n), mean, var, ll,
                       4 - 2 * ll, float(ks.statistic), float(ks.pvalue), 0, "mle",
                       float(np.sqrt(g_m @ cov @ g_m)), float(np.sqrt(g_v @ cov @ g_v)), float(g_m @ cov @ g_v))


__all__ = ["FitError", "PoissonFit", "SeverityFit", "fit_beta", "fit_lognormal", "fit_poisson"]
