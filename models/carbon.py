"""Carbon accounting: stock volume -> biomass -> carbon -> tCO2e, and project crediting.

Two conversion methods for trees, so their structural difference is visible:

* ``"bef"`` -- IPCC 2006 Vol. 4 Eq. 2.8 / CCER AR-CM-001 (and NDRC provincial inventory guideline):
  ``C [tC/ha] = V * D * BEF * (1 + R) * CF``
* ``"fang"`` -- Fang et al. (2001) continuous biomass expansion: ``B [Mg/ha] = a*V + b`` (total tree
  biomass, above + below ground), ``C = B * 0.5`` (the carbon fraction Fang et al. used, in the
  parameter file as ``fang_carbon_fraction``). Below ``fang_min_volume_m3_per_ha`` the biomass is
  scaled linearly to zero (the intercept ``b`` is fitted on established stands). Species without a
  Fang function fall back to the BEF method, and results say so.

Bamboo is modelled directly in tC/ha (see :mod:`models.growth`), so its carbon needs no conversion.
``tCO2e = tC * 44/12``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from models.parameters import ModelParameters

CarbonMethod = Literal["bef", "fang"]
CARBON_METHODS: tuple[str, ...] = ("bef", "fang")
#: the latest crediting start accepted, in years after the run's start: a bound on the input, no rule's figure
#: (a start beyond a run's horizon credits nothing in it)
MAX_YEARS_TO_CREDITING_START = 50


@dataclass(frozen=True)
class CarbonFactors:
    """Per-parcel linear conversion ``C = slope * V + intercept`` (tC/ha), with the Fang ramp.

    For the BEF method ``intercept`` is 0 and ``ramp_volume`` irrelevant. For Fang, below
    ``ramp_volume`` the carbon is ``(slope*ramp + intercept) * V / ramp``.
    """

    slope: np.ndarray
    intercept: np.ndarray
    ramp_volume: float
    method: str

    def tc_per_ha(self, volume_m3_per_ha: np.ndarray) -> np.ndarray:
        """Tree carbon density (tC/ha) from stock volume (m3/ha), any broadcastable shape."""
        v = np.asarray(volume_m3_per_ha, dtype=np.float64)
        c = v * self.slope
        if self.method == "bef":
            return c
        c += self.intercept
        ramp = self.ramp_volume
        if ramp > 0:
            low = v < ramp
            if np.any(low):
                full = (self.slope * ramp + self.intercept) * (v / ramp)
                c = np.where(low, full, c)
        return np.maximum(c, 0.0)


def carbon_factors(params: ModelParameters, species_code: np.ndarray, method: CarbonMethod = "bef") -> CarbonFactors:
    """Conversion factors for parcels of the given species codes.

    Bamboo species get zeros (their carbon is simulated directly).
    """
    if method not in CARBON_METHODS:
        raise ValueError(f"unknown carbon method {method!r}; use one of {CARBON_METHODS}")
    t = params.tables
    sc = np.asarray(species_code)
    bef_slope = t.wood_density_t_per_m3 * t.bef * (1.0 + t.root_shoot_ratio) * t.carbon_fraction
    bef_slope = np.where(t.is_bamboo, 0.0, bef_slope)
    if method == "bef":
        return CarbonFactors(bef_slope[sc], np.zeros(sc.shape), 0.0, "bef")
    use_fang = t.has_fang & ~t.is_bamboo
    cf = params.file.carbon.fang_carbon_fraction.value
    slope = np.where(use_fang, t.fang_a * cf, bef_slope)
    intercept = np.where(use_fang, t.fang_b * cf, 0.0)
    ramp = params.file.carbon.fang_min_volume_m3_per_ha.value
    return CarbonFactors(slope[sc], intercept[sc], ramp, "fang")


def tree_carbon_tc_per_ha(volume_m3_per_ha, wood_density_t_per_m3, bef, root_shoot_ratio, carbon_fraction):
    """IPCC/CCER stand carbon ``V * D * BEF * (1 + R) * CF`` in tC/ha (scalar or arrays)."""
    return (np.asarray(volume_m3_per_ha) * wood_density_t_per_m3 * bef * (1.0 + root_shoot_ratio)
            * carbon_fraction)


def fang_carbon_tc_per_ha(volume_m3_per_ha, a, b, carbon_fraction=0.5):
    """Fang et al. (2001): ``(a*V + b) * CF`` in tC/ha (no low-volume ramp; Fang used CF = 0.5)."""
    return (a * np.asarray(volume_m3_per_ha) + b) * carbon_fraction


def co2e(tc, params: ModelParameters | None = None):
    """tC -> tCO2e (44/12)."""
    ratio = params.file.carbon.co2_per_c.value if params is not None else 44.0 / 12.0
    return np.asarray(tc) * ratio


def species_fallback_to_bef(params: ModelParameters) -> list[str]:
    """Tree species for which the Fang method falls back to BEF (no published function)."""
    t = params.tables
    return [s for i, s in enumerate(params.species_ids) if not t.is_bamboo[i] and not t.has_fang[i]]


# --------------------------------------------------------------------------------------------
# Crediting
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreditingRules:
    """Project crediting: removals above baseline, minus leakage, minus a non-permanence buffer.

    Credits are issued at the end of each monitoring period (every ``monitoring_period_years``):

    ``issued = max(0, ΔS - baseline * ΔS⁺ - leakage * ΔS⁺ - deficit) * (1 - buffer)``

    where ``ΔS`` is the change in stock (tCO2e) over the period and ``ΔS⁺`` its positive part. A
    period with a net loss (a reversal) issues nothing, and its loss is carried forward as a deficit
    that later removals must make good before new credits are issued (the usual registry rule that
    reversals are compensated before further issuance). Verifications issue only within the
    crediting period (``crediting_period_years``; None: no end): the MEE's 2023 CCER rules give
    forestry projects 20 to 40 years.

    The crediting period and its monitoring periods count from the project's crediting start. By
    default that is the run's start; a project that began crediting ``years_credited_before_start``
    years before it (:meth:`from_parameters` takes its ``crediting_start_year``) has that many years
    fewer left, and its verifications keep their phase (a project credited since 2023 with 5-year
    periods verifies at the end of 2027, 2032, ...). The stock at its last verification is not known:
    the first verification in the run credits the change since the run's start (the accrual before it
    is left out, which errs low). A project that begins crediting later (a negative
    ``years_credited_before_start``: ``crediting_start_year`` after the run's first year, a forest
    pledged while its project is being registered) credits nothing before its start: its first
    verification credits the change since the stock at the crediting start (:meth:`is_crediting_start`),
    so growth before it is never credited and losses before it are no reversals.
    """

    monitoring_period_years: int
    baseline_removal_fraction: float
    leakage_fraction: float
    buffer_fraction: float
    crediting_period_years: int | None = None
    years_credited_before_start: int = 0

    #: the rules a caller may override (:meth:`from_parameters`); ``crediting_start_year`` is turned into
    #: ``years_credited_before_start`` with the run's start year
    OVERRIDES = ("monitoring_period_years", "baseline_removal_fraction", "leakage_fraction", "buffer_fraction",
                 "crediting_period_years", "years_credited_before_start", "crediting_start_year")

    @classmethod
    def from_parameters(cls, params: ModelParameters, *, start_year: int | None = None,
                        **overrides: float) -> "CreditingRules":
        """The parameter file's crediting rules with ``overrides`` (None: keep the file's).

        ``crediting_start_year`` (a calendar year; after ``start_year``, the run's first year, for a project
        that begins crediting later) sets ``years_credited_before_start = start_year - crediting_start_year``.
        """
        c = params.file.crediting
        vals = dict(
            monitoring_period_years=int(c.monitoring_period_years.value),
            baseline_removal_fraction=c.baseline_removal_fraction.value,
            leakage_fraction=c.leakage_fraction.value,
            buffer_fraction=c.buffer_fraction.value,
            crediting_period_years=(None if c.crediting_period_years is None
                                    else int(c.crediting_period_years.value)),
            years_credited_before_start=0,
        )
        whole = ("crediting_period_years", "monitoring_period_years", "years_credited_before_start",
                 "crediting_start_year")
        start = None
        for k, v in overrides.items():
            if v is None:
                continue
            if k not in cls.OVERRIDES:
                raise ValueError(f"unknown crediting rule {k!r}; known: {', '.join(cls.OVERRIDES)}")
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{k} must be a number, got {v!r}") from None
            if k in whole and fv != int(fv):
                raise ValueError(f"{k} must be a whole number of years, got {v}")
            if k == "crediting_start_year":
                start = int(fv)
            else:
                vals[k] = int(fv) if k in whole else fv
        if start is not None and overrides.get("years_credited_before_start") is not None:
            raise ValueError("give crediting_start_year or years_credited_before_start, not both")
        if start is not None:
            if start_year is None:
                raise ValueError("crediting_start_year needs the run's start year")
            vals["years_credited_before_start"] = int(start_year) - start
        rules = cls(**vals)
        rules.validate()
        return rules

    @classmethod
    def checked(cls, params: ModelParameters, *, start_year: int | None = None, **overrides: float) -> "CreditingRules":
        """:meth:`from_parameters`, whose refusal (a ``ValueError``) starts with the name of the override at fault
        (``"crediting_start_year: the crediting start is 60 years after the run's start ..."``; the first override where the
        reason names none), for callers that report it at that field."""
        try:
            return cls.from_parameters(params, start_year=start_year, **overrides)
        except ValueError as exc:
            msg = str(exc)
            given = [k for k, v in overrides.items() if v is not None]
            if not given:
                raise
            name = next((k for k in given if k in msg), given[0])
            raise ValueError(f"{name}: {msg.removeprefix(name + ' ')}") from None

    def validate(self) -> None:
        if self.monitoring_period_years < 1:
            raise ValueError("monitoring_period_years must be >= 1")
        if self.crediting_period_years is not None and self.crediting_period_years < self.monitoring_period_years:
            raise ValueError(f"crediting_period_years must be >= monitoring_period_years "
                             f"({self.monitoring_period_years}), got {self.crediting_period_years}")
        x = self.years_credited_before_start
        if x < -MAX_YEARS_TO_CREDITING_START:
            raise ValueError(f"the crediting start is {-x} years after the run's start (crediting_start_year); at "
                             f"most {MAX_YEARS_TO_CREDITING_START} are modelled")
        if self.crediting_period_years is not None and x >= self.crediting_period_years:
            raise ValueError(f"the crediting period (crediting_period_years {self.crediting_period_years}) ended "
                             f"before the run's start ({x} years credited before it, from crediting_start_year): "
                             f"no verification would issue credits")
        for name in ("baseline_removal_fraction", "leakage_fraction", "buffer_fraction"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {v}")
        if self.baseline_removal_fraction + self.leakage_fraction >= 1:
            raise ValueError("baseline_removal_fraction + leakage_fraction must be < 1")

    def is_issuance_year(self, year_index: np.ndarray | int) -> np.ndarray | bool:
        """True at the end of a monitoring period within the crediting period, and at the crediting period's
        end: the year's end, counted in years since the crediting start (``year_index + 1 +
        years_credited_before_start``), is a multiple of the monitoring period and at most the crediting
        period, or is the crediting period's last year (a period that is not a whole number of monitoring
        periods is verified to its end: its last monitoring period is shorter, and its removals are credited)."""
        n = np.asarray(year_index) + 1 + self.years_credited_before_start
        due = (n > 0) & (n % self.monitoring_period_years == 0)  # none before a later crediting start
        if self.crediting_period_years is None:
            return due
        return (due & (n <= self.crediting_period_years)) | (n == self.crediting_period_years)

    def is_crediting_start(self, year_index: np.ndarray | int) -> np.ndarray | bool:
        """True at the end of the run year after which a later crediting start falls (``year_index + 1 +
        years_credited_before_start == 0``): the stock then is what the first verification's change counts from
        (never for a project crediting since the run's start or before it, whose count starts at the run's start)."""
        return np.asarray(year_index) + 1 + self.years_credited_before_start == 0

    def first_issuance_year(self) -> int | None:
        """The run year (1-based: its end) of the first verification, None if none falls in the crediting period."""
        p, x = self.monitoring_period_years, self.years_credited_before_start
        # the first period end after the run's start (or after a later crediting start), from the crediting start
        n = (max(x, 0) // p + 1) * p
        if self.crediting_period_years is not None:
            if x >= self.crediting_period_years:
                return None
            n = min(n, self.crediting_period_years)  # the crediting period's end is verified too
        return n - x

    def issue(self, stock_change_tco2e: np.ndarray, deficit_tco2e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Credits issued for one monitoring period.

        Parameters
        ----------
        stock_change_tco2e : ndarray
            Net stock change over the period (tCO2e), any shape.
        deficit_tco2e : ndarray
            Uncompensated reversals carried from earlier periods (>= 0).

        Returns
        -------
        issued, buffer, new_deficit : ndarray
            Credits issued to the project, credits withheld in the buffer, and the carried deficit.
        """
        d = np.asarray(stock_change_tco2e, dtype=np.float64)
        gain = np.maximum(d, 0.0)
        net = d - (self.baseline_removal_fraction + self.leakage_fraction) * gain - deficit_tco2e
        creditable = np.maximum(net, 0.0)
        new_deficit = np.maximum(-net, 0.0)
        buffer = creditable * self.buffer_fraction
        return creditable - buffer, buffer, new_deficit

    def issue_from_stock(self, stock_tco2e: np.ndarray, stock0_tco2e: float | np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Credits issued and buffer withheld at each year end by one crediting unit, from its stock alone.

        The engine issues per project from its parcels' changes (their gains summed for the baseline and leakage
        shares); without those shares (both 0, as in the Lishui parameter file) a verification's credits depend
        only on the unit's stock change since the last verification and the carried deficit, so a unit's stock
        paths give them under other rules than the run's (a loan's own crediting start or period, valued on a
        stress run). The same rules as the engine: verifications at :meth:`is_issuance_year`, a later crediting
        start's stock as the first one's base (:meth:`is_crediting_start`), :meth:`issue`.

        Parameters
        ----------
        stock_tco2e : ndarray, shape (years, n)
            The unit's stock at the end of each year (row ``y``: end of year ``y + 1``), tCO2e.
        stock0_tco2e : float or ndarray of shape (n,)
            Its stock at the start.

        Returns
        -------
        issued, buffer : ndarray, shape (years, n)

        Raises
        ------
        ValueError
            With a baseline or leakage share: they apply to the parcels' gains, which a unit's stock does not tell.
        """
        if self.baseline_removal_fraction or self.leakage_fraction:
            raise ValueError("credits from a unit's stock need baseline_removal_fraction and leakage_fraction 0 "
                             "(they apply to the sum of its parcels' gains, which its stock does not tell)")
        stock = np.asarray(stock_tco2e, dtype=np.float64)
        issued, buffer = np.zeros(stock.shape), np.zeros(stock.shape)
        for y, iss, buf, _ in self._verifications(stock, stock0_tco2e):
            if iss is not None:
                issued[y], buffer[y] = iss, buf
        return issued, buffer

    def _verifications(self, stock: np.ndarray, stock0_tco2e: float | np.ndarray):
        """The crediting rules run over a unit's stock at each year end (``stock``, (years, n)), a year at a time
        vectorised over the paths: ``(y, issued, buffer, position)`` per year -- the verification's credits and
        buffer (None in a year without one), and the position the next verification starts from after it (None
        before a later crediting start)."""
        years, n = stock.shape
        last = np.broadcast_to(np.asarray(stock0_tco2e, dtype=np.float64), (n,)).copy()
        deficit = np.zeros(n)
        started = self.years_credited_before_start >= 0
        for y in range(years):
            issued = buffer = None
            if self.is_crediting_start(y):  # a later crediting start: the first verification counts from here
                last = stock[y].copy()
                started = True
            if self.is_issuance_year(y):  # this year's verification issues what is creditable
                issued, buffer, deficit = self.issue(stock[y] - last, deficit)
                last = stock[y].copy()
            yield y, issued, buffer, (stock[y] - last - deficit if started else None)

    def with_overrides(self, start_year: int, **overrides: int | None) -> "CreditingRules":
        """These rules with a crediting unit's own ``crediting_start_year`` (a calendar year, ``start_year`` the
        run's first) and ``crediting_period_years`` (None: keep), validated."""
        vals = dataclasses.asdict(self)
        unknown = set(overrides) - {"crediting_start_year", "crediting_period_years"}
        if unknown:
            raise ValueError(f"unknown crediting override(s) {sorted(unknown)}")
        if overrides.get("crediting_start_year") is not None:
            vals["years_credited_before_start"] = int(start_year) - int(overrides["crediting_start_year"])
        if overrides.get("crediting_period_years") is not None:
            vals["crediting_period_years"] = int(overrides["crediting_period_years"])
        rules = CreditingRules(**vals)
        rules.validate()
        return rules

    def accrued_position(self, stock_tco2e: np.ndarray, stock0_tco2e: float | np.ndarray) -> np.ndarray:
        """The position the next verification starts from, at the end of each year (after that year's
        verification, if it has one): the stock change since the last verification (since the start
        before the first) less the deficit carried from earlier periods, tCO2e. Its positive part, net of the baseline and leakage shares and the
        buffer, is what a verification now would issue (:meth:`issue`).

        Parameters
        ----------
        stock_tco2e : ndarray, shape (years, n)
            The crediting unit's stock at the end of each year (row ``y``: end of year ``y + 1``).
        stock0_tco2e : float or ndarray of shape (n,)
            Its stock at the start.

        Returns
        -------
        ndarray, shape (years + 1, n)
            Row ``t``: the position at the end of year ``t`` (row 0: the start, 0).
        """
        stock = np.asarray(stock_tco2e, dtype=np.float64)
        out = np.zeros((stock.shape[0] + 1, stock.shape[1]))
        for y, _, _, position in self._verifications(stock, stock0_tco2e):
            if position is not None:  # nothing accrues before a later crediting start
                out[y + 1] = position
        return out
