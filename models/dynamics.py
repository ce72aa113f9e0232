"""The stand simulator: growth, perils and carbon for a block of paths, year by year.

:class:`ForestSimulator` is the science half of the Monte Carlo engine. It knows nothing of money,
chunks or workers: given a block of paths (a :class:`~models.rng.KeyedRandom` naming their global
indices) it yields, for each simulated year, the carbon state of every (path, parcel) pair and the
losses of every peril. :mod:`finance_engine.simulation` decides which blocks to run where and how
to aggregate them.

Three levels of growth uncertainty (see :mod:`models.growth`):

* parameter uncertainty -- asymptote and rate multipliers drawn once per parameter set and species group;
* a region-wide climate-year shock shared by all parcels, AR(1) in time;
* parcel-level noise, independent by parcel and year.

The perils' long-run rates are uncertain parameters too: each peril's hazard is multiplied by a
mean-one lognormal drawn once per parameter set (:meth:`ForestSimulator.frequency_multipliers`), and
the severity of those that declare it likewise (:meth:`ForestSimulator.severity_multipliers`),
and pine wilt's landscape spread rates (:func:`spread_draws`).
Each can be switched off (``SimulationSwitches``) for closed-form checks and attribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterator, Sequence

import numpy as np

from models._stand_kernels import TreeGrowth, age_stands, apply_losses, clear_fell, grow_year
from models.carbon import CarbonFactors, CarbonMethod, carbon_factors
from models.growth import GrowthInputs, bamboo_step, grow_relative_maturity, resolve_growth
from models.parameters import ModelParameters
from models.perils import Peril, PerilLosses, StandState, YearContext, peril_classes
from models.perils.pine_wilt import SpreadDraws
from models.portfolio import Portfolio
from models.rng import KeyedRandom, group_keys, normal_from_uniform

DEFAULT_START_YEAR = 2026


@dataclass(frozen=True)
class SimulationSwitches:
    """What is random and what is on. Defaults are the full model.

    ``parameter_uncertainty`` draws the uncertain parameters once per set of paths: the growth curves'
    asymptotes and rates (``growth_parameter_uncertainty``) and the perils' long-run rates and
    severities (``peril_parameter_uncertainty``, the parameter file's ``peril_uncertainty``). Off,
    neither is drawn; each sub-switch turns its part off alone (the valuation's driver attribution does).
    ``background_mortality`` reports the background mortality flux and gross growth beside the net
    change; off, growth is reported net and mortality as 0. The stock is the same either way: the yield
    curves already net it out (:mod:`models.growth`).
    """

    parameter_uncertainty: bool = True
    growth_parameter_uncertainty: bool = True
    peril_parameter_uncertainty: bool = True
    growth_shocks: bool = True
    parcel_noise: bool = True
    background_mortality: bool = True
    cascades: bool = True
    independent: bool = False
    perils: tuple[str, ...] | None = None  # None: every enabled peril in the parameter file
    # Paths ``k*m .. k*m+m-1`` share one draw of the uncertain parameters (a nested design), so the
    # spread of results splits into parameter (epistemic) uncertainty and sampling noise.
    parameter_set_size: int = 4
    # Antithetic variates for the region-wide climate-year shock: path 2k+1 mirrors path 2k.
    antithetic: bool = False

    def __post_init__(self) -> None:
        if self.parameter_set_size < 1:
            raise ValueError("parameter_set_size must be >= 1")
        if self.antithetic and self.parameter_set_size % 2:
            # antithetic pairs (2k, 2k+1) must fall inside one set, so the set means (from which the
            # standard error is computed) average each pair: the reported error stays honest
            raise ValueError("antithetic variates need an even parameter_set_size")

    @property
    def draws_parameters(self) -> bool:
        """Whether any uncertain parameter is drawn per parameter set: ``parameter_uncertainty`` with at least
        one of its parts (``growth_parameter_uncertainty``, ``peril_parameter_uncertainty``) on. With both parts
        off the paths are those of ``parameter_uncertainty=False`` and the engine reports them as it reports
        those: a parameter sd of 0 (not an estimate of sampling noise), quantile and tail errors of independent
        paths (:attr:`correlated_set_size` 1)."""
        return bool(self.parameter_uncertainty and (self.growth_parameter_uncertainty
                                                    or self.peril_parameter_uncertainty))

    @property
    def correlated_set_size(self) -> int:
        """Paths that share a parameter draw: ``parameter_set_size`` when parameters are drawn
        (:attr:`draws_parameters`), else 1 (the paths are then independent, and errors that count sets would
        only add noise)."""
        return self.parameter_set_size if self.draws_parameters else 1

    @property
    def mc_block_size(self) -> int:
        """Consecutive paths whose draws are not independent of one another, so that Monte Carlo errors must
        count them as one block: a parameter set when parameters are drawn (:attr:`correlated_set_size`), else
        an antithetic pair (``antithetic``), else one path. Blocks ``k`` hold paths ``k*b .. k*b+b-1``."""
        return mc_block_paths(self.correlated_set_size, self.antithetic)

    def without(self, *perils: str) -> "SimulationSwitches":
        """The same switches with some perils turned off."""
        current = self.perils
        return replace(self, perils=tuple(p for p in (current or ()) if p not in perils) if current is not None
                       else ("__all_but__", *perils))


def mc_block_paths(correlated_set_size: int, antithetic: bool) -> int:
    """The paths of one independent Monte Carlo block: the paths sharing a parameter draw (``correlated_set_size``
    above 1), else an antithetic pair, else one path (:attr:`SimulationSwitches.mc_block_size`)."""
    m = max(int(correlated_set_size), 1)
    return m if m > 1 else (2 if antithetic else 1)


def recorded_block_size(switches: dict) -> int:
    """The paths of one independent Monte Carlo block in a run whose provenance recorded ``switches``
    (:attr:`SimulationSwitches.mc_block_size`: a parameter set, else an antithetic pair, else one path); a record
    without them drew nothing and paired nothing (1)."""
    known = {f.name for f in fields(SimulationSwitches)}
    recorded = {"parameter_uncertainty": False, "parameter_set_size": 1,
                **{k: v for k, v in switches.items() if k in known}}
    return SimulationSwitches(**recorded).mc_block_size


def recorded_set_size(switches: dict) -> int:
    """The paths that share a parameter draw in a run whose provenance recorded ``switches`` (the fields of
    :class:`SimulationSwitches`): its ``parameter_set_size`` when parameters were drawn
    (:attr:`SimulationSwitches.draws_parameters`), else 1 (the paths are independent); a record without
    them drew nothing."""
    known = {f.name for f in fields(SimulationSwitches)}
    recorded = {"parameter_uncertainty": False, "parameter_set_size": 1,
                **{k: v for k, v in switches.items() if k in known}}
    return SimulationSwitches(**recorded).correlated_set_size


@dataclass(frozen=True)
class Modifiers:
    """Scenario modifiers applied on top of the parameter file (see finance_engine.stress).

    ``hazard`` / ``severity``: peril -> multiplier (scalar, or a function of the 0-based year
    returning a scalar). ``growth``: 0-based year -> growth multiplier (drought years).
    ``forced_events``: 0-based year -> peril -> list of event dicts understood by that peril.
    ``climate_pathway``: name of the ``perils.climate`` pathway to use.

    Multipliers are finite and at least 0 (0 switches a peril off, or stops growth for a year); perils are
    named as :func:`models.perils.peril_classes` names them; years are whole numbers in [0, 200) (a year
    beyond a run's horizon is never reached: a scenario may be longer than the run). :meth:`validate`
    checks them; the engine does for every run (``simulate``), where a function multiplier is evaluated
    once per run for each year of the horizon (:func:`finance_engine.simulation.config.modifiers_by_value`),
    so any callable works (a lambda, a function redefined between runs) on every backend.
    """

    hazard: dict[str, Any] = field(default_factory=dict)
    severity: dict[str, Any] = field(default_factory=dict)
    growth: dict[int, float] = field(default_factory=dict)
    forced_events: dict[int, dict[str, list[dict]]] = field(default_factory=dict)
    climate_pathway: str | None = None

    def validate(self, years: int | None = None) -> None:
        """``ValueError`` naming the field of the first multiplier that is not a finite number >= 0 (a function
        multiplier is evaluated at each year ``0 .. years-1`` when ``years`` is given), of an unknown peril, or of
        a year that is not a whole number in [0, 200)."""
        from models.perils import peril_classes

        known = list(peril_classes())
        for kind in ("hazard", "severity"):
            mods = getattr(self, kind)
            if not isinstance(mods, dict):
                raise ValueError(f"modifiers.{kind} must be a dict of peril -> multiplier, got {type(mods).__name__}")
            for peril, v in mods.items():
                if peril not in known:
                    raise ValueError(f"modifiers.{kind}: unknown peril {peril!r}; known: {known}")
                if callable(v):
                    for y in range(int(years or 0)):
                        _check_multiplier(f"modifiers.{kind}[{peril!r}] in year {y}", v(y))
                else:
                    _check_multiplier(f"modifiers.{kind}[{peril!r}]", v)
        if not isinstance(self.growth, dict):
            raise ValueError(f"modifiers.growth must be a dict of year -> multiplier, got {type(self.growth).__name__}")
        for y, v in self.growth.items():
            _check_year("modifiers.growth", y)
            _check_multiplier(f"modifiers.growth[{y}]", v)
        if not isinstance(self.forced_events, dict):
            raise ValueError("modifiers.forced_events must be a dict of year -> peril -> list of events")
        for y, by_peril in self.forced_events.items():
            _check_year("modifiers.forced_events", y)
            if not isinstance(by_peril, dict):
                raise ValueError(f"modifiers.forced_events[{y}] must be a dict of peril -> list of events")
            bad = [p for p in by_peril if p not in known]
            if bad:
                raise ValueError(f"modifiers.forced_events[{y}]: unknown peril(s) {bad}; known: {known}")
        if self.climate_pathway is not None and not isinstance(self.climate_pathway, str):
            raise ValueError(f"modifiers.climate_pathway must be a pathway name, got {self.climate_pathway!r}")


#: modifier years lie in [0, MODIFIER_YEARS): the engine's longest horizon
MODIFIER_YEARS = 200


def _check_multiplier(name: str, v: Any) -> None:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {v!r}")
    if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")


def _check_year(name: str, y: Any) -> None:
    if isinstance(y, (bool, np.bool_)) or not isinstance(y, (int, np.integer)) or not 0 <= y < MODIFIER_YEARS:
        raise ValueError(f"{name}: years are 0-based whole numbers in [0, {MODIFIER_YEARS}), got {y!r}")


@dataclass(frozen=True)
class GroupSums:
    """Ask the simulator for group sums instead of dense arrays.

    ``stock_start_sums[i, g]`` is the sum over parcels ``j`` of group ``g`` (``group_of_parcel[j]``)
    of ``weight[j] * carbon_start[i, j]``, added in ascending parcel order; ``growth_sums`` the same
    for the year's gross growth. With ``weight`` = area (ha) x 44/12 the sums are in tCO2e.
    """

    group_of_parcel: np.ndarray
    n_groups: int
    weight: np.ndarray


@dataclass
class YearOutput:
    """One simulated year for a block of paths. Carbon arrays are tC/ha, shape (n_paths, n_parcels).

    With :class:`GroupSums` requested the dense start, growth and mortality arrays are ``None`` and
    ``stock_start_sums`` / ``growth_sums`` (n_paths, n_groups) hold their weighted group sums.
    """

    year: int
    calendar_year: int
    carbon_start_tc_per_ha: np.ndarray | None
    carbon_end_tc_per_ha: np.ndarray
    growth_tc_per_ha: np.ndarray | None
    mortality_tc_per_ha: np.ndarray | None
    losses: list[tuple[str, PerilLosses, np.ndarray]]  # (peril, sparse losses, loss tC/ha per entry)
    # clear-fell harvest at the rotation age: (path positions, parcel positions, tC/ha removed)
    harvest: tuple[np.ndarray, np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)))
    stock_start_sums: np.ndarray | None = None
    growth_sums: np.ndarray | None = None


def spread_draws(params: ModelParameters, switches: SimulationSwitches) -> SpreadDraws | None:
    """Pine wilt's landscape spread-rate draws under these switches (None: the file's rates).

    The log-sds of the local transmission and long-distance jump rates come from the parameter
    file's ``peril_uncertainty.pine_wilt``; they are drawn with the perils' other parameters
    (``parameter_uncertainty`` and ``peril_parameter_uncertainty`` on), once per parameter set of
    ``parameter_set_size`` paths. A service that warms the landscape's footprint
    (:func:`models.perils.pine_wilt.warm_footprint`) passes the draws of the switches its runs use.
    """
    pu = params.file.peril_uncertainty.get("pine_wilt")
    if pu is None or not (switches.parameter_uncertainty and switches.peril_parameter_uncertainty):
        return None
    local = pu.local_transmission_log_sd.value if pu.local_transmission_log_sd is not None else 0.0
    jump = pu.long_distance_jump_log_sd.value if pu.long_distance_jump_log_sd is not None else 0.0
    if local == 0 and jump == 0:
        return None
    return SpreadDraws(float(local), float(jump), int(switches.parameter_set_size))


def _lognormal_mean_one(z: np.ndarray, cv: float) -> np.ndarray:
    sigma = np.sqrt(np.log1p(cv * cv))
    return np.exp(sigma * z - 0.5 * sigma * sigma)


def climate_pathways(params: ModelParameters) -> tuple[str, ...]:
    """The climate pathways a parameter set defines (its ``perils.climate`` block); only ``current`` (today's
    climate) without one."""
    climate = params.perils.get("climate")
    return tuple(climate.pathways) if climate is not None else ("current",)


class ForestSimulator:
    """Simulate a portfolio's stands under growth uncertainty and perils.

    Parameters
    ----------
    params : ModelParameters
    portfolio : Portfolio
    carbon_method : {"bef", "fang"}
    switches : SimulationSwitches
    modifiers : Modifiers, optional
    start_year : int
        Calendar year of simulation year 0 (climate trends are indexed by calendar year).
    """

    def __init__(self, params: ModelParameters, portfolio: Portfolio, *, carbon_method: CarbonMethod = "bef",
                 switches: SimulationSwitches | None = None, modifiers: Modifiers | None = None,
                 start_year: int = DEFAULT_START_YEAR):
        if portfolio.parameter_sha256 and portfolio.parameter_sha256 != params.sha256:
            raise ValueError("the portfolio was validated against a different parameter set")
        self.params = params
        self.portfolio = portfolio
        self.carbon_method = carbon_method
        self.switches = switches or SimulationSwitches()
        self.modifiers = modifiers or Modifiers()
        self.start_year = int(start_year)
        self.factors = carbon_factors(params, portfolio.species_code, carbon_method)
        nt = portfolio.n_tree
        self.tree_factors = CarbonFactors(self.factors.slope[:nt], self.factors.intercept[:nt],
                                          self.factors.ramp_volume, self.factors.method)
        self.growth: GrowthInputs = resolve_growth(
            params, portfolio.species_code, portfolio.site_code, portfolio.age_years,
            portfolio.volume_m3_per_ha, portfolio.bamboo_carbon_tc_per_ha)
        self.n_tree = portfolio.n_tree
        sp_codes = np.asarray(portfolio.species_code, dtype=np.intp)
        self._species_keys = group_keys([f"species:{s}" for s in params.species_ids])
        self._parcel_species = sp_codes
        gu = params.file.growth_uncertainty
        self._cv_a = gu.asymptote_cv.value
        self._cv_k = gu.rate_cv.value
        self._shock_sd = gu.regional_shock_sd.value
        self._shock_rho = gu.regional_shock_autocorrelation.value
        self._noise_sd = gu.parcel_noise_sd.value
        self._mortality = gu.background_mortality_rate.value if self.switches.background_mortality else 0.0
        regen = params.file.regeneration
        self._replant_delay = int(regen.replanting_delay_years.value)
        # clear-fell rotations (tree parcels with a rotation age; trees come first in canonical order)
        rot = np.asarray(portfolio.rotation_age_years, dtype=float)
        # per tree parcel, inf where it is never clear-felled: one contiguous compare per row
        self._rotation_threshold = np.ascontiguousarray(rot[:portfolio.n_tree], dtype=np.float32)
        self._clear_fells = bool(np.isfinite(self._rotation_threshold).any())
        # a replanted stand's carbon (zero volume), per tree parcel: the same elementwise expression
        self._carbon_at_zero = np.ascontiguousarray(
            self._tree_carbon_at(np.zeros(portfolio.n_tree), np.arange(portfolio.n_tree)), dtype=np.float64)
        bamboo_sp = [s for s in params.file.species.values() if s.bamboo is not None]
        self._bamboo_establishment = bamboo_sp[0].bamboo.establishment_stock_tc_per_ha.value if bamboo_sp else 0.0
        # a stand measured above the ceiling keeps its measured level as its own ceiling
        self._bamboo_ceiling = np.maximum(self.growth.bamboo_ceiling_tc_per_ha, self.growth.bamboo_managed_tc_per_ha)
        self.perils: list[Peril] = self._build_perils()
        #: pine wilt's spread-rate draws (None: the file's rates), which its landscape process takes
        self.spread_draws = spread_draws(params, self.switches)
        for p in self.perils:
            if p.name == "pine_wilt":
                p.set_spread(self.spread_draws)
        # epistemic uncertainty of the perils' frequencies and severities (the parameter file's
        # peril_uncertainty), keyed by peril name: turning a peril off leaves the others' draws as they were
        pu = params.file.peril_uncertainty
        self._peril_log_sd: dict[str, dict[str, float]] = {}
        self._peril_keys: dict[str, np.ndarray] = {}
        for kind in ("frequency", "severity"):
            sds = {p.name: getattr(pu[p.name], f"{kind}_log_sd").value for p in self.perils
                   if p.name in pu and getattr(pu[p.name], f"{kind}_log_sd") is not None}
            self._peril_log_sd[kind] = {name: s for name, s in sds.items() if s > 0}
            self._peril_keys[kind] = group_keys([f"peril:{name}" for name in self._peril_log_sd[kind]])
        cascades = params.perils.get("cascades")
        self._cascades = cascades if (cascades is not None and cascades.enabled and self.switches.cascades) else None
        climate = params.perils.get("climate")
        pathway_name = self.modifiers.climate_pathway or (climate.default_pathway if climate else None) or "current"
        known = climate_pathways(params)
        if pathway_name not in known:
            raise ValueError(f"unknown climate pathway {pathway_name!r}; known: {sorted(known)}")
        self.climate = climate.pathways[pathway_name] if climate is not None else None
        self.climate_pathway = pathway_name

    # ------------------------------------------------------------------------------------------
    def _build_perils(self) -> list[Peril]:
        classes = peril_classes()
        wanted = self.switches.perils
        if wanted is not None and wanted[:1] == ("__all_but__",):
            names = [n for n in classes if n not in wanted[1:]]
        elif wanted is not None:
            unknown = [n for n in wanted if n not in classes]
            if unknown:
                raise ValueError(f"unknown peril(s) {unknown}; known: {list(classes)}")
            names = [n for n in classes if n in wanted]
        else:
            names = list(classes)
        out = []
        for n in names:
            p = self.params.perils.get(n)
            if p is None or not p.enabled:
                continue
            out.append(classes[n](p, self.params, self.portfolio))
        return out

    @property
    def peril_names(self) -> list[str]:
        return [p.name for p in self.perils]

    def notes(self) -> dict[str, Any]:
        """What the perils record about their set-up for this portfolio (:meth:`Peril.notes`)."""
        out: dict[str, Any] = {}
        for p in self.perils:
            out.update(p.notes())
        return out

    def initial_carbon_tc_per_ha(self) -> np.ndarray:
        """Today's carbon density per parcel (tC/ha), deterministic."""
        g = self.growth
        tree_c = self.factors.tc_per_ha(g.initial_volume_m3_per_ha)
        return np.where(g.is_bamboo, g.initial_bamboo_tc_per_ha, tree_c)

    def expected_annual_sink_tc_per_ha(self) -> np.ndarray:
        """First-year carbon gain of each parcel with every multiplier at 1 and no losses (tC/ha/yr).

        The net change along the curves (background mortality is inside them: :mod:`models.growth`):
        the deterministic "potential sink" of today's stands, before any peril.
        """
        g = self.growth
        u0 = (np.clip(g.initial_volume_m3_per_ha / g.asymptote_m3_per_ha, 0, 1 - 1e-12)) ** (1 / g.shape)
        u1 = grow_relative_maturity(u0, g.rate_per_year, 1.0)
        v1 = g.asymptote_m3_per_ha * u1 ** g.shape
        tree = self.factors.tc_per_ha(v1) - self.factors.tc_per_ha(g.initial_volume_m3_per_ha)
        # from the establishment stock at least, as the simulator's bamboo step (a cleared stand regrows from it)
        b1 = bamboo_step(np.maximum(g.initial_bamboo_tc_per_ha, max(self._bamboo_establishment, 1e-9)),
                         g.bamboo_managed_tc_per_ha,
                         g.bamboo_drift_tc_per_ha_yr, self._bamboo_ceiling, g.bamboo_rate_per_year, 1.0)
        bamboo = b1 - g.initial_bamboo_tc_per_ha
        return np.where(g.is_bamboo, bamboo, tree)

    # ------------------------------------------------------------------------------------------
    def run(self, rnd: KeyedRandom, years: int, *, group_sums: GroupSums | None = None) -> Iterator[YearOutput]:
        """Yield one :class:`YearOutput` per simulated year for the paths of ``rnd``.

        Without ``group_sums`` every year carries dense (paths x parcels) arrays of the start stock,
        growth and background mortality, and its own copy of the end stock. With ``group_sums`` the
        growth pass adds the weighted start stock and growth into group sums instead (one compiled
        pass, no dense outputs), and ``carbon_end_tc_per_ha`` is the simulator's live state: read it
        before asking for the next year.
        """
        if years < 1:
            raise ValueError("years must be >= 1")
        if rnd.n_parcels != self.portfolio.n_parcels:
            raise ValueError("the random source covers a different number of parcels")
        g = self.growth
        sw = self.switches
        n_paths, n = rnd.n_paths, self.portfolio.n_parcels
        nt = self.n_tree
        sp = self._parcel_species

        # growth parameter uncertainty: once per parameter set and species group
        n_species = len(self._species_keys)
        if sw.parameter_uncertainty and sw.growth_parameter_uncertainty and (self._cv_a > 0 or self._cv_k > 0):
            prnd = self.parameter_random(rnd)
            za = normal_from_uniform(prnd.keyed_uniform("growth.param.asymptote", 0, self._species_keys))
            zk = normal_from_uniform(prnd.keyed_uniform("growth.param.rate", 0, self._species_keys))
            a_mult = _lognormal_mean_one(za, self._cv_a)
            k_mult = _lognormal_mean_one(zk, self._cv_k)
        else:
            a_mult = np.ones((n_paths, n_species))
            k_mult = np.ones((n_paths, n_species))
        frequency, severity = self.frequency_multipliers(rnd), self.severity_multipliers(rnd)
        shape = np.ascontiguousarray(g.shape[:nt], dtype=np.float64)
        keep = 1.0 - self._mortality
        tf = self.tree_factors
        v0 = np.ascontiguousarray(g.initial_volume_m3_per_ha[:nt], dtype=np.float64)
        tree = TreeGrowth(
            a_base=np.ascontiguousarray(g.asymptote_m3_per_ha[:nt], dtype=np.float64),
            # today's volume is observed: the drawn multiplier scales the growth still to come above it (TreeGrowth)
            a_floor=v0 * 1.001,
            k_base=np.ascontiguousarray(g.rate_per_year[:nt], dtype=np.float64),
            species=np.ascontiguousarray(sp[:nt], dtype=np.intp),
            a_mult=np.ascontiguousarray(a_mult, dtype=np.float64),
            k_mult=np.ascontiguousarray(k_mult, dtype=np.float64),
            shape=shape,
            slope=np.ascontiguousarray(tf.slope, dtype=np.float64),
            intercept=np.ascontiguousarray(tf.intercept, dtype=np.float64),
            ramp=float(tf.ramp_volume), fang=tf.method != "bef")
        asym = tree.asymptote()
        # the kernels walk rows: every (paths x parcels) state array must be C-ordered (fancy
        # indexing and astype of a broadcast view can hand back Fortran-ordered arrays)
        u = np.ascontiguousarray(np.clip(v0[None, :] / asym, 0.0, 1.0 - 1e-12) ** (1.0 / shape[None, :]))
        age = np.empty((n_paths, n), dtype=np.float32)
        age[:] = self.portfolio.age_years[None, :]
        # the tree stands replanted during the run, whose asymptote is the bare site's drawn curve: nothing of a
        # replant is observed today (TreeGrowth); 1 byte a pair
        replanted = np.zeros((n_paths, nt), dtype=np.bool_)
        carbon = np.empty((n_paths, n))
        carbon[:, :nt] = tf.tc_per_ha(asym * u ** shape[None, :]) if nt else 0.0
        carbon[:, nt:] = g.initial_bamboo_tc_per_ha[None, nt:]
        del asym
        casc = self._cascades
        # cascade windows: 2 bytes a pair; the perils derive their multipliers from it
        weakened_until = np.full((n_paths, n), -1, dtype=np.int16)
        if casc is not None:
            fire_weak, pest_weak = np.float32(casc.fire_multiplier.value), np.float32(casc.pest_multiplier.value)
            window = int(casc.years.value)
        else:
            weakened_until.setflags(write=False)  # nothing opens a window
            fire_weak = pest_weak = np.float32(1.0)
        states = [p.init_state(n_paths, rnd, years=years) for p in self.perils]
        shock = np.zeros(n_paths)
        noise_half_width = np.sqrt(3.0) * self._noise_sd
        ceiling_b = np.ascontiguousarray(self._bamboo_ceiling[nt:], dtype=np.float64)
        managed_b = g.bamboo_managed_tc_per_ha[nt:]
        dense = group_sums is None
        if not dense:
            group = np.ascontiguousarray(group_sums.group_of_parcel, dtype=np.intp)
            weight = np.ascontiguousarray(group_sums.weight, dtype=np.float64)
            n_groups = int(group_sums.n_groups)
        no_rows = np.empty(0, dtype=np.uint64)
        keys = np.ascontiguousarray(rnd.parcel_keys, dtype=np.uint64)
        # a destroyed stand waits ``replanting_delay_years`` full years without growth: it leaves the year of its
        # loss at age -delay, so the loss sets -(delay + 1) and the year's end ages it (later perils of that year
        # see a negative age, a stand with nothing standing)
        replant_age = np.float32(-float(self._replant_delay + 1))

        for y in range(years):
            cal = self.start_year + y
            # ---- growth and background mortality: one compiled pass -----------------------------
            if sw.growth_shocks and self._shock_sd > 0:
                z = self._shock_normal(rnd, y)
                if y == 0:
                    shock = self._shock_sd * z
                else:
                    shock = self._shock_rho * shock + np.sqrt(1 - self._shock_rho**2) * self._shock_sd * z
                m_path = np.exp(shock - 0.5 * self._shock_sd**2)
            else:
                m_path = np.ones(n_paths)
            m_path = np.ascontiguousarray(m_path * float(self.modifiers.growth.get(y, 1.0)))
            with_noise = sw.parcel_noise and self._noise_sd > 0
            noise_rows = rnd.stream_rows("growth.parcel_noise", y) if with_noise else no_rows
            managed_now = np.ascontiguousarray(np.minimum(ceiling_b, managed_b + g.bamboo_drift_tc_per_ha_yr * y))
            carbon_start = carbon.copy() if dense else None
            dense_out = (np.empty((n_paths, n)), np.empty((n_paths, n))) if dense else None
            sums = None if dense else (group, weight, np.empty((n_paths, n_groups)), np.empty((n_paths, n_groups)))
            bamboo = (managed_now, ceiling_b, float(g.bamboo_rate_per_year), float(g.bamboo_drift_tc_per_ha_yr),
                      float(self._bamboo_establishment))
            grow_year(carbon, u, age, replanted, tree, noise_rows, keys, float(2.0 * noise_half_width),
                      float(1.0 - noise_half_width), m_path, bamboo, float(keep), sums, dense_out)
            # ---- perils -----------------------------------------------------------------------
            stand = StandState(carbon_tc_per_ha=carbon, age_years=age, weakened_until=weakened_until, year=y,
                               fire_weakened_multiplier=fire_weak, pest_weakened_multiplier=pest_weak)
            ctx = YearContext(
                year=y, calendar_year=cal, rnd=rnd, stand=stand, drought=np.zeros(n_paths, dtype=bool),
                hazard_multiplier=self._multipliers("hazard", y, cal, frequency),
                severity_multiplier=self._multipliers("severity", y, cal, severity),
                forced_events=self.modifiers.forced_events.get(y, {}),
                independent=sw.independent,
            )
            losses: list[tuple[str, PerilLosses, np.ndarray]] = []
            broken: list[tuple[np.ndarray, np.ndarray]] = []
            for peril, state in zip(self.perils, states):
                pl = peril.step(ctx, state)
                if len(pl) == 0:
                    losses.append((peril.name, pl, np.empty(0)))
                    continue
                lost = apply_losses(carbon, u, age, replanted, tree, pl.path_pos, pl.parcel_pos, pl.loss_fraction,
                                    pl.stand_replacing, replant_age)
                losses.append((peril.name, pl, lost))
                if pl.stand_replacing.any():
                    self._stands_replaced(states, pl.path_pos[pl.stand_replacing], pl.parcel_pos[pl.stand_replacing])
                if casc is not None and peril.name in casc.breakage_perils:
                    hit = np.clip(pl.loss_fraction, 0.0, 1.0) >= casc.damage_threshold.value
                    if hit.any():
                        broken.append((pl.path_pos[hit], pl.parcel_pos[hit]))
            # breakage opens cascade windows from next year on: every peril of this year saw the
            # windows as they stood when the year began
            for bp, bq in broken:
                weakened_until[bp, bq] = y + window
            # ---- the stands age a year: growth and every peril of the year saw the age at its start --------
            age_stands(age)
            # ---- clear-fell at the rotation age, replant at once ---------------------------------
            harvest = None
            if self._clear_fells:
                hp, hq, removed = clear_fell(age, self._rotation_threshold, carbon, u, replanted,
                                             self._carbon_at_zero)
                if hp.size:
                    harvest = (hp, hq, removed)
                    self._stands_replaced(states, hp, hq)
            out = YearOutput(year=y, calendar_year=cal, carbon_start_tc_per_ha=carbon_start,
                             carbon_end_tc_per_ha=carbon.copy() if dense else carbon,
                             growth_tc_per_ha=dense_out[0] if dense else None,
                             mortality_tc_per_ha=dense_out[1] if dense else None, losses=losses)
            if not dense:
                out.stock_start_sums, out.growth_sums = sums[2], sums[3]
            if harvest is not None:
                out.harvest = harvest
            yield out

    def _stands_replaced(self, states: list, pp: np.ndarray, qq: np.ndarray) -> None:
        """Tell every peril that the stands at (``pp``, ``qq``) were replaced (:meth:`Peril.stands_replaced`)."""
        for peril, state in zip(self.perils, states):
            peril.stands_replaced(state, pp, qq)

    # ------------------------------------------------------------------------------------------
    def parameter_random(self, rnd: KeyedRandom) -> KeyedRandom:
        """Random streams for the uncertain parameters: keyed by parameter set, not by path."""
        return rnd.by_parameter_set(self.switches.parameter_set_size)

    def _shock_normal(self, rnd: KeyedRandom, year: int) -> np.ndarray:
        if not self.switches.antithetic:
            return rnd.path_normal("growth.regional_shock", year)
        ids = np.asarray(rnd.path_ids)
        base = KeyedRandom(rnd.seed, ids // 2, rnd.parcel_keys)
        sign = np.where(ids % 2 == 0, 1.0, -1.0)
        return sign * base.path_normal("growth.regional_shock", year)

    def frequency_multipliers(self, rnd: KeyedRandom) -> dict[str, np.ndarray]:
        """Each peril's frequency multiplier per path: one draw per parameter set.

        ``exp(s z - s^2 / 2)`` with ``s`` the peril's ``frequency_log_sd`` and ``z`` a standard normal
        keyed by parameter set and peril name (stream ``peril.param.frequency``): a mean-one lognormal
        that multiplies the peril's hazard, so the perils' long-run rates are as uncertain as the
        parameter file says. The variance analysis identifies the spread they cause as parameter
        uncertainty (``parameter_sd``); the Monte Carlo error of a mean, which counts parameter sets,
        grows with it too. Empty with ``parameter_uncertainty`` or ``peril_parameter_uncertainty`` off.

        Returns
        -------
        dict of str to ndarray of float64, shape (n_paths,)
        """
        return self._peril_draws(rnd, "frequency")

    def severity_multipliers(self, rnd: KeyedRandom) -> dict[str, np.ndarray]:
        """Each peril's severity multiplier per path, as :meth:`frequency_multipliers` with the
        ``severity_log_sd`` of the perils that declare one (stream ``peril.param.severity``): it
        multiplies ``ctx.severity(peril)``, the scale of the peril's damage (pine wilt's mortality
        rates, the ice storm's volume loss)."""
        return self._peril_draws(rnd, "severity")

    def _peril_draws(self, rnd: KeyedRandom, kind: str) -> dict[str, np.ndarray]:
        sw, sds = self.switches, self._peril_log_sd[kind]
        if not (sw.parameter_uncertainty and sw.peril_parameter_uncertainty and sds):
            return {}
        z = normal_from_uniform(self.parameter_random(rnd).keyed_uniform(f"peril.param.{kind}", 0,
                                                                         self._peril_keys[kind]))
        return {name: np.exp(s * z[:, j] - 0.5 * s * s) for j, (name, s) in enumerate(sds.items())}

    def _multipliers(self, kind: str, y: int, cal: int, per_path: dict[str, np.ndarray] | None = None
                     ) -> dict[str, Any]:
        """The year's ``kind`` ("hazard" or "severity") multiplier of each peril: climate pathway x
        scenario, times ``per_path[peril]`` where given (the parameter set's draws)."""
        out: dict[str, Any] = {}
        mods = getattr(self.modifiers, kind)
        # the pathway's multipliers depend on (kind, peril, calendar year) only: interpolated once
        # per simulator, not per chunk-year (numpy's interp holds the GIL the chunks' threads share)
        cache = self.__dict__.setdefault("_climate_cache", {})
        for p in self.perils:
            if self.climate is None:
                m = 1.0
            else:
                key = (kind, p.name, cal)
                m = cache.get(key)
                if m is None:
                    m = cache[key] = self.climate.multiplier(kind, p.name, cal)
            s = mods.get(p.name, 1.0)
            s = s(y) if callable(s) else s
            out[p.name] = m * s
            if per_path and p.name in per_path:
                out[p.name] = out[p.name] * per_path[p.name]
        return out

    def _tree_carbon_at(self, vol: np.ndarray, qq: np.ndarray) -> np.ndarray:
        f = self.factors
        c = vol * f.slope[qq]
        if f.method == "bef":
            return c
        c += f.intercept[qq]
        ramp = f.ramp_volume
        if ramp > 0:
            c = np.where(vol < ramp, (f.slope[qq] * ramp + f.intercept[qq]) * (vol / ramp), c)
        return np.maximum(c, 0.0)

__all__ = ["DEFAULT_START_YEAR", "ForestSimulator", "GroupSums", "Modifiers", "SimulationSwitches", "YearOutput",
           "climate_pathways", "recorded_set_size", "spread_draws"]
