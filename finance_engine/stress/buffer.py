"""Buffer adequacy: does a non-permanence buffer cover the reversals, compared with Verra's NPRT.

Definitions (per path, over the horizon, summed over credited projects)
----------------------------------------------------------------------
* **Gross credits** ``G``: credits issued plus the buffer withheld (tCO2e) -- what the projects
  generated before the buffer deduction.
* **Reversals** ``R``: at each verification (every monitoring period, :class:`models.carbon.CreditingRules`)
  a project whose stock fell since the previous verification has a reversal equal to the fall
  ``max(0, S_prev - S_now)``; ``R`` sums them over projects and verifications (the engine carries
  the same fall as a deficit before new issuance).
* A buffer of fraction ``b`` holds ``b G`` units; it is **exhausted** on a path when ``R > b G``.

:func:`buffer_adequacy` returns ``P(R > b G)`` with its Monte Carlo standard error (counted over
parameter sets when paths share a parameter draw, :func:`finance_engine.mc_error.mean_se`) and the buffers
that cover the reversals with 95 % and 99 % probability, the empirical quantiles of ``R / G``, each with
its 95 % order-statistic interval (:func:`finance_engine.mc_error.order_statistic_ci`; its ranks widened by
the quantile's design effect when paths share a parameter draw, as every quantile of the engine's paths is)
and a flag saying whether the paths resolve it: a 99th percentile of 96 paths rests on about one path, and
its interval's upper rank lies beyond the sample (``*_resolved`` False, ``*_paths_needed`` the paths that
would bound it).

The Verra AFOLU Non-Permanence Risk Tool v4.2 scores natural risk per hazard from the frequency
(return interval) and the loss per event, Table 10, times a mitigation multiplier
(``finance_engine/data/stress_defaults.yaml``). :func:`nprt_natural_risk` estimates both from a
simulation at the project scale and scores them, so the simulated buffer need can be put next to the
tool's score for the same hazards.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finance_engine.mc_error import CONFIDENCE, mean_se, order_statistic_ci
from finance_engine.simulation.summary import quantile_design_effect, widened_ranks
from finance_engine.stress.run import ScenarioRun
from models.carbon import CreditingRules
from models.dynamics import recorded_set_size
from models.parameters import ModelParameters
from models._yaml import load_yaml

DEFAULTS_PATH = Path(__file__).resolve().parent.parent / "data" / "stress_defaults.yaml"
NPRT_ROWS = ("insignificant", "minor", "major", "devastating", "catastrophic")
#: the probabilities of the buffers reported (``buffer_needed_95``, ``buffer_needed_99``)
BUFFER_LEVELS = (0.95, 0.99)
#: how a buffer quantile the paths do not resolve reads (as the reports' parameter sds)
NOT_RESOLVED = "not resolved"
#: what the terminal and the report say under the buffer table
BUFFER_NOTE = ("buffer_needed_95 / _99: the buffer (share of gross credits) covering the reversals with 95 % / 99 % "
               "probability, an empirical quantile of the paths' reversal share, with its 95 % order-statistic "
               "interval in brackets (ranks widened for paths that share a parameter draw); not resolved: the "
               "interval's upper end lies beyond the simulated paths (open), and the figure rests on a handful of "
               "paths: run at least the paths named")


class BufferInputError(ValueError):
    """Bad input to a buffer calculation; the message names the argument."""


@lru_cache(maxsize=2)
def load_stress_defaults(path: str | None = None) -> dict[str, Any]:
    """The stress defaults file (NPRT table, mitigation, lever defaults), checked for shape."""
    p = Path(path) if path else DEFAULTS_PATH
    raw = load_yaml(p.read_text(encoding="utf-8"))
    t = raw["nprt_table_10"]
    if len(t["return_interval_bounds_years"]) != 4 or len(t["loss_bounds"]) != 4:
        raise BufferInputError(f"{p}: nprt_table_10 needs 4 return-interval and 4 loss bounds")
    for r in NPRT_ROWS:
        if len(t["rows"].get(r, [])) != 5:
            raise BufferInputError(f"{p}: nprt_table_10.rows.{r} needs 5 scores")
    return raw


# ---------------------------------------------------------------------------------------------
# NPRT scoring
# ---------------------------------------------------------------------------------------------
def nprt_frequency_class(return_interval_years: float) -> int:
    """Column of Table 10: 0 for events more often than every 10 years ... 4 for >= 100 years."""
    if not return_interval_years > 0:
        raise BufferInputError(f"return_interval_years must be > 0, got {return_interval_years}")
    bounds = load_stress_defaults()["nprt_table_10"]["return_interval_bounds_years"]
    return int(np.searchsorted(np.asarray(bounds, float), return_interval_years, side="right"))


def nprt_loss_class(loss_fraction: float) -> str:
    """Row of Table 10 for a loss per event (share of project carbon)."""
    if not 0 <= loss_fraction <= 1:
        raise BufferInputError(f"loss_fraction must lie in [0, 1], got {loss_fraction}")
    bounds = load_stress_defaults()["nprt_table_10"]["loss_bounds"]
    return NPRT_ROWS[int(np.searchsorted(np.asarray(bounds, float), loss_fraction, side="right"))]


def nprt_ls_score(return_interval_years: float, loss_fraction: float) -> float:
    """Likelihood x significance score of NPRT v4.2 Table 10 (``inf`` for FAIL)."""
    row = load_stress_defaults()["nprt_table_10"]["rows"][nprt_loss_class(loss_fraction)]
    v = row[nprt_frequency_class(return_interval_years)]
    return float("inf") if str(v).upper() == "FAIL" else float(v)


def nprt_mitigation(peril: str) -> float:
    d = load_stress_defaults()
    cls = d["nprt_peril_mitigation"].get(peril, "none")
    return float(d["nprt_mitigation_multipliers"][cls])


# ---------------------------------------------------------------------------------------------
# Buffer adequacy
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BufferAdequacy:
    """Reversals against a buffer, over one horizon.

    ``buffer_needed_q`` (q = 95, 99) has its 95 % interval ``buffer_needed_q_ci95_low`` ..
    ``buffer_needed_q_ci95_high`` (``inf``: unbounded above, too few paths beyond the quantile),
    ``buffer_needed_q_resolved`` (both ends of the interval are simulated paths) and, where not resolved,
    ``buffer_needed_q_paths_needed`` (:func:`quantile_paths_needed`; None where resolved). ``set_size``: the
    paths that share a parameter draw, over which the errors are counted.
    """

    buffer_fraction: float
    p_exhausted: float
    p_exhausted_se: float
    buffer_needed_95: float
    buffer_needed_99: float
    mean_reversal_share: float
    paths: int
    buffer_needed_95_ci95_low: float = float("nan")
    buffer_needed_95_ci95_high: float = float("nan")
    buffer_needed_95_resolved: bool = False
    buffer_needed_95_paths_needed: int | None = None
    buffer_needed_99_ci95_low: float = float("nan")
    buffer_needed_99_ci95_high: float = float("nan")
    buffer_needed_99_resolved: bool = False
    buffer_needed_99_paths_needed: int | None = None
    set_size: int = 1

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)

    @property
    def not_resolved(self) -> list[str]:
        """The buffer quantiles the paths do not resolve."""
        return [f"buffer_needed_{round(100 * p)}" for p in BUFFER_LEVELS
                if not getattr(self, f"buffer_needed_{round(100 * p)}_resolved")]


def _upper_and_lower_ok(ns: np.ndarray, p: float, deff: float, confidence: float) -> np.ndarray:
    """Whether the ``p``-quantile's order-statistic interval (:func:`finance_engine.mc_error.order_statistic_ci`,
    its ranks widened by ``sqrt(deff)`` where ``deff > 1``) has both ends among ``n`` sample values, per ``n``."""
    from scipy import stats

    alpha = 1.0 - confidence
    r = stats.binom.ppf(alpha / 2, ns, p)
    s = stats.binom.ppf(1 - alpha / 2, ns, p) + 1
    r, s = widened_ranks(ns, p, r, s, deff)  # the engine's widening, for every n at once
    return (r >= 1) & (s <= ns)


def quantile_paths_needed(p: float, deff: float | None = None, set_size: int = 1,
                          confidence: float = CONFIDENCE) -> int:
    """The fewest paths (whole parameter sets of ``set_size``, at least two) from which on the ``p``-quantile's
    order-statistic interval has both ends among the paths, its ranks widened by the design effect ``deff``
    (taken as it was estimated; None or below 1: none).

    Without a design effect the upper end is bounded once ``P(Bin(n, p) <= n - 1) = 1 - p^n`` reaches
    ``1 - alpha / 2``: ``n >= ln(alpha / 2) / ln(p)``, 72 paths for the 95th percentile and 368 for the 99th.
    """
    if not 0.0 < p < 1.0:
        raise BufferInputError(f"p must lie in (0, 1), got {p}")
    m = max(int(set_size), 1)
    d = float(deff) if deff is not None and np.isfinite(deff) and deff > 1.0 else 1.0
    alpha = 1.0 - confidence
    n0 = max(np.log(alpha / 2) / np.log(p), np.log(alpha / 2) / np.log(1.0 - p), 2.0)
    hi = int(np.ceil(4.0 * d * n0)) + 4 * m
    while True:
        ns = np.arange(2 * m, hi + m, m, dtype=np.int64)
        ok = _upper_and_lower_ok(ns, p, d, confidence)
        if ok[-1]:
            bad = np.flatnonzero(~ok)  # the first n from which on every larger one is bounded too
            return int(ns[bad[-1] + 1] if bad.size else ns[0])
        hi *= 2


def _quantile_with_interval(share: np.ndarray, p: float, set_size: int) -> dict[str, Any]:
    """The empirical ``p``-quantile (``inverted_cdf``) of ``share``, its 95 % interval, whether the paths resolve
    it and, if not, the paths that would."""
    n = share.size
    xs = np.sort(share)
    q = float(np.quantile(xs, p, method="inverted_cdf"))
    low, high, r, s = order_statistic_ci(xs, p, CONFIDENCE, share, set_size, quantile=q)
    sets = n // set_size if set_size > 1 else n
    deff = None
    if set_size > 1 and sets >= 2:
        with np.errstate(invalid="ignore"):
            deff = quantile_design_effect(share, q, p, set_size)
    # counted over parameter sets, two sets at least are needed for any interval
    resolved = bool(r >= 1 and s <= n and (set_size == 1 or sets >= 2))
    need = None if resolved else quantile_paths_needed(p, None if deff is None else float(deff), set_size)
    return {"value": q, "low": low, "high": high, "resolved": resolved, "paths_needed": need}


def buffer_adequacy(reversals_tco2e, gross_credits_tco2e, buffer_fraction: float,
                    set_size: int = 1) -> BufferAdequacy:
    """Probability that reversals exceed a buffer, and the buffers covering them at 95 % and 99 %.

    Parameters
    ----------
    reversals_tco2e, gross_credits_tco2e : array (paths,)
        Reversals and gross credits over the horizon per path (tCO2e).
    buffer_fraction : float
        Share of gross credits withheld, in [0, 1].
    set_size : int
        Consecutive paths that share a draw of the uncertain parameters (the run's
        ``SimulationSwitches.correlated_set_size``): the standard error of ``P(R > b G)`` is counted
        over those sets, as every mean of the engine's paths is, and the buffers' intervals are widened by
        their design effect over them; 1 for independent paths (binomial).

    Returns
    -------
    BufferAdequacy
        ``buffer_needed_q`` is the empirical ``q`` quantile of ``R / G`` (paths with ``G = 0`` count
        as ``R / G = 0`` when ``R = 0`` and as ``inf`` otherwise), with its 95 % order-statistic interval
        and whether the paths resolve it (:class:`BufferAdequacy`).
    """
    r = np.asarray(reversals_tco2e, dtype=float)
    g = np.asarray(gross_credits_tco2e, dtype=float)
    if r.ndim != 1 or r.shape != g.shape or r.size < 2:
        raise BufferInputError("reversals_tco2e and gross_credits_tco2e must be 1-d arrays of the same length >= 2")
    if not (np.isfinite(r).all() and np.isfinite(g).all()) or (r < 0).any() or (g < 0).any():
        raise BufferInputError("reversals and gross credits must be finite and >= 0")
    if not 0 <= buffer_fraction <= 1:
        raise BufferInputError(f"buffer_fraction must lie in [0, 1], got {buffer_fraction}")
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(g > 0, r / np.where(g > 0, g, 1.0), np.where(r > 0, np.inf, 0.0))
    exhausted = r > buffer_fraction * g
    p = float(exhausted.mean())
    n = r.size
    if int(set_size) < 1:
        raise BufferInputError(f"set_size must be >= 1, got {set_size}")
    m = int(set_size)
    # paths of a parameter set share its draws: their exhaustions are correlated, and a binomial error
    # (independent paths) was about 15 % too small on the demo registry
    p_se = mean_se(exhausted.astype(float), m) if m > 1 else float(np.sqrt(p * (1 - p) / n))
    qs = {round(100 * lv): _quantile_with_interval(share, lv, m) for lv in BUFFER_LEVELS}
    return BufferAdequacy(
        float(buffer_fraction), p, p_se, qs[95]["value"], qs[99]["value"],
        float(np.mean(share[np.isfinite(share)])) if np.isfinite(share).any() else float("inf"), n,
        **{f"buffer_needed_{k}_{f}": v[key] for k, v in qs.items()
           for f, key in (("ci95_low", "low"), ("ci95_high", "high"), ("resolved", "resolved"),
                          ("paths_needed", "paths_needed"))},
        set_size=m)


def buffer_needed_text(row, level: int, fmt=lambda x: f"{x:.3g}", open_end: str = "open") -> str:
    """A buffer quantile as the terminal and the report show it: ``value [low, high]`` (its 95 % interval), or
    ``not resolved: value [low, open]; needs >= N paths`` where the paths do not resolve it (:data:`BUFFER_NOTE`).
    ``row``: a :meth:`BufferAdequacy.as_dict` (or a row of the table of them)."""
    def num(x) -> str:
        return open_end if x is None or not np.isfinite(float(x)) else fmt(float(x))

    k = f"buffer_needed_{level}"
    v = row[k]
    lo, hi = row.get(f"{k}_ci95_low"), row.get(f"{k}_ci95_high")
    ci = "" if lo is None or hi is None or (lo != lo or hi != hi) else f" [{num(lo)}, {num(hi)}]"
    if bool(row.get(f"{k}_resolved", True)):
        return f"{num(v)}{ci}"
    need = row.get(f"{k}_paths_needed")
    more = f"; needs >= {int(need):,} paths" if need is not None and need == need else ""
    return f"{NOT_RESOLVED}: {num(v)}{ci}{more}"


_BUFFER_TAIL_COLUMNS = ("nprt_natural_risk_buffer", "mean_reversals_tco2e", "mean_gross_credits_tco2e")


def buffer_display_table(df: pd.DataFrame, fmt=lambda x: f"{x:.3g}") -> pd.DataFrame:
    """A table of :func:`buffer_report` rows (less its ``nprt_scores``) as the terminal and the HTML report show it:
    ``P(exhausted) ± s.e.``, each buffer quantile as :func:`buffer_needed_text` (its 95 % interval, or not resolved
    and the paths that would resolve it), the reversal share, the paths and the NPRT buffer. ``fmt`` formats a
    number."""
    rows = []
    for r in df.to_dict(orient="records"):
        rows.append({"scenario": r.get("scenario"), "years": r.get("years"), "buffer_fraction": r["buffer_fraction"],
                     "p_exhausted": f"{fmt(r['p_exhausted'])} ± {fmt(r['p_exhausted_se'])}",
                     **{f"buffer_needed_{round(100 * q)}": buffer_needed_text(r, round(100 * q), fmt=fmt)
                        for q in BUFFER_LEVELS},
                     "mean_reversal_share": r["mean_reversal_share"], "paths": r["paths"],
                     **{k: r[k] for k in _BUFFER_TAIL_COLUMNS if k in r}})
    return pd.DataFrame(rows)


def reversals_and_credits(run: ScenarioRun, params: ModelParameters, years: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-path reversals and gross credits (tCO2e) of the credited projects over ``years``.

    ``run`` must keep the ``project_id`` level (``extra_levels=("project_id",)``).
    """
    res = run.result
    if "project_id" not in res.per_path:
        why = res.provenance.get("levels_without_quantiles", {}).get("project_id")
        if why is not None:  # asked for, but summarised from streamed moments: over the per-path budget
            raise BufferInputError(f"the run kept no per-path values at the project_id level ({why}): it fell back "
                                   "to streamed moments over the per-path memory budget; use fewer paths or a "
                                   "larger per_path_budget_mib")
        raise BufferInputError("the run did not keep the project_id level; run it with extra_levels=('project_id',)")
    labels = np.asarray(res.labels["project_id"], dtype=str)
    credited = labels != ""
    stock = res.paths_of("stock_tco2e", "project_id")[:years][:, :, credited]       # (Y, P, G)
    s0 = res.start_stock("project_id").reindex(labels[credited]).to_numpy()
    rules = CreditingRules(**res.provenance["crediting"]) if "crediting" in res.provenance \
        else CreditingRules.from_parameters(params)
    rev = np.zeros(stock.shape[1])
    prev = np.broadcast_to(s0, stock.shape[1:])
    for y in range(years):
        if rules.is_crediting_start(y):  # a later crediting start: losses before it are no reversals
            prev = stock[y]
        if rules.is_issuance_year(y):
            rev += np.maximum(prev - stock[y], 0.0).sum(axis=1)
            prev = stock[y]
    issued = res.paths_of("credits_issued_tco2e", "project_id")[:years][:, :, credited].sum(axis=(0, 2))
    withheld = res.paths_of("buffer_withheld_tco2e", "project_id")[:years][:, :, credited].sum(axis=(0, 2))
    return rev, issued + withheld


def nprt_natural_risk(run: ScenarioRun, years: int, materiality: float | None = None) -> pd.DataFrame:
    """NPRT natural-risk scores of each peril estimated from a run at the project scale.

    For every credited project and year, a peril's loss share is its loss over the stock at the start of
    the year. A year with a share of at least ``materiality`` (default from the data file) is an event.
    Frequency: events per project-year, as a return interval; loss per event: the mean share in event
    years. Score = Table 10 LS x the peril's mitigation multiplier.
    """
    res = run.result
    mat = float(load_stress_defaults()["nprt_event_materiality"]["value"] if materiality is None else materiality)
    labels = np.asarray(res.labels["project_id"], dtype=str)
    credited = labels != ""
    stock = res.paths_of("stock_tco2e", "project_id")[:years][:, :, credited]
    s0 = res.start_stock("project_id").reindex(labels[credited]).to_numpy()
    start = np.concatenate([np.broadcast_to(s0, stock.shape[1:])[None], stock[:-1]], axis=0)
    rows = []
    for m in res.metrics:
        if not m.startswith("loss_") or m == "loss_tco2e":
            continue
        peril = m[5:-6]
        loss = res.paths_of(m, "project_id")[:years][:, :, credited]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(start > 0, loss / np.where(start > 0, start, 1.0), 0.0)
        event = share >= mat
        f = float(event.mean())
        sev = float(share[event].mean()) if event.any() else 0.0
        ri = 1.0 / f if f > 0 else float("inf")
        ls = nprt_ls_score(ri if np.isfinite(ri) else 1e9, min(sev, 1.0))
        mult = nprt_mitigation(peril)
        rows.append({"peril": peril, "event_rate_per_project_year": f, "return_interval_years": ri,
                     "loss_per_event": sev, "loss_class": nprt_loss_class(min(sev, 1.0)),
                     "frequency_class": nprt_frequency_class(ri if np.isfinite(ri) else 1e9),
                     "ls_score": ls, "mitigation_multiplier": mult, "score": ls * mult,
                     "expected_loss_share_per_year": float(share.mean())})
    return pd.DataFrame(rows)


def buffer_report(run: ScenarioRun, params: ModelParameters, years: int,
                  buffer_fraction: float | None = None) -> dict[str, Any]:
    """Buffer adequacy of a run next to the NPRT natural-risk score for the same hazards."""
    b = params.file.crediting.buffer_fraction.value if buffer_fraction is None else float(buffer_fraction)
    rev, gross = reversals_and_credits(run, params, years)
    sw = run.result.provenance.get("switches", {})
    set_size = recorded_set_size(sw)
    ad = buffer_adequacy(rev, gross, b, set_size=set_size)
    nprt = nprt_natural_risk(run, years)
    total = float(nprt["score"].sum())
    return {"scenario": run.scenario.name, "years": years, **ad.as_dict(),
            "nprt_natural_risk_score_pct": total, "nprt_natural_risk_buffer": total / 100.0,
            "nprt_scores": nprt, "mean_reversals_tco2e": float(rev.mean()),
            "mean_gross_credits_tco2e": float(gross.mean())}


__all__ = ["BUFFER_LEVELS", "BUFFER_NOTE", "BufferAdequacy", "BufferInputError", "NOT_RESOLVED", "buffer_adequacy",
           "buffer_display_table", "buffer_needed_text", "buffer_report", "load_stress_defaults",
           "quantile_paths_needed",
           "nprt_frequency_class", "nprt_loss_class", "nprt_ls_score", "nprt_mitigation", "nprt_natural_risk",
           "reversals_and_credits"]
