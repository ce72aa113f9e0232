"""Run configuration of the Monte Carlo engine."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

from models.carbon import CARBON_METHODS
from models.dynamics import DEFAULT_START_YEAR, Modifiers, SimulationSwitches
from models.portfolio import LEVELS

# The unit of path bookkeeping. Chunks are whole blocks, and moment sums are kept per block and
# added in block order at the end, so results do not depend on the chunk size or on which worker
# finished first.
PATH_BLOCK = 32
ALL_LEVELS: tuple[str, ...] = ("portfolio", *LEVELS, "project_id", "species_group", "parcel")
DEFAULT_QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.10, 0.50, 0.90, 0.95, 0.99)
DEFAULT_TAIL_LEVELS: tuple[float, ...] = (0.95, 0.99)
# Levels with at most this many groups keep every path's value (quantiles, TVaR); finer levels
# keep streaming moments (mean, standard error) only, so memory never grows with parcels x paths.
MAX_GROUPS_FOR_QUANTILES = 200
#: Levels keep every path's value (float64, metrics x years x paths x groups) only within this many bytes
#: together, with the summary's transient memory for the largest of them (its whole-horizon array and working
#: copies of one metric: ``chunk.summary_transient_bytes``): the budget bounds the kept per-path arrays plus
#: that peak of the summary, not the chunks' own state or the summary tables. The ``portfolio`` level (one group)
#: is always kept, whatever the budget: the loan, the quote and the year loss table read it (its bytes count
#: against the budget the other levels share; ``require_per_path`` follows the same rule). The other levels are
#: admitted coarse to fine (fewest groups first); a level that would take the total beyond it is summarised from streamed moments like a level of more than ``MAX_GROUPS_FOR_QUANTILES``
#: groups (mean, ``mc_se``, ``parameter_sd`` and its interval; no quantiles or TVaR), and the result's
#: provenance says so (``levels_without_quantiles``). A city-scale township level (144 groups, 13 metrics,
#: 30 years, 10,000 paths) would need 4.2 GiB against the engine's 2 GB peak-memory target; the demo's
#: (5,000 parcels, 1,000 paths) needs 0.45 GiB. ``SimulationConfig.per_path_budget_mib`` (``simulate(...,
#: per_path_budget_mib=)``) overrides it for a run.
PER_PATH_BUDGET_BYTES = 768 * 2**20


@dataclass(frozen=True)
class YearValues:
    """A multiplier given per 0-based year of a run: ``values[y]`` (what :func:`modifiers_by_value` makes of a
    function multiplier). A value: compared, hashed and pickled by its numbers."""

    values: tuple[Any, ...]

    def __call__(self, y: int) -> Any:
        return self.values[y]


def is_value_object(v: Any) -> bool:
    """A frozen dataclass instance (such as :class:`finance_engine.stress.scenarios.YearMultiplier`): compared
    and pickled by its fields, so a run's set-up can be keyed by it."""
    return dataclasses.is_dataclass(v) and not isinstance(v, type) and v.__dataclass_params__.frozen


def modifiers_by_value(modifiers: Modifiers, years: int) -> Modifiers:
    """``modifiers`` with every function multiplier that is not a value object (:func:`is_value_object`)
    replaced by its values in years ``0 .. years-1`` (:class:`YearValues`).

    The engine keys its set-ups (and ships its runs to worker processes) by the pickled config, and pickle
    names a function by its qualified name, not its code: a function redefined between runs (a notebook
    cell run again) would have reused the set-up built with the old one, and a lambda could not be sent at
    all. Evaluated here, once per run, a multiplier is its numbers. The values are the function's own, so
    the run's numbers are those of the function.
    """
    def by_value(mods: dict[str, Any]) -> dict[str, Any]:
        return {p: (YearValues(tuple(v(y) for y in range(int(years))))
                    if callable(v) and not is_value_object(v) else v) for p, v in mods.items()}

    if not isinstance(modifiers, Modifiers):
        raise ValueError(f"modifiers must be a models.dynamics.Modifiers, got {type(modifiers).__name__}")
    if not any(callable(v) and not is_value_object(v)
               for mods in (modifiers.hazard, modifiers.severity) if isinstance(mods, dict) for v in mods.values()):
        return modifiers
    return replace(modifiers, hazard=by_value(modifiers.hazard), severity=by_value(modifiers.severity))


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a run's numbers (and nothing that only affects speed).

    Parameters
    ----------
    years : int
        Horizon in years (simulation years 0 .. years-1; calendar year = start_year + year).
    paths : int
        Number of Monte Carlo paths.
    seed : int
        Seed of every random stream.
    levels : tuple of str
        Account levels to report: ``portfolio``, ``province`` .. ``village``, ``project_id``,
        ``species_group``, ``parcel``.
    carbon_method : {"bef", "fang"}
    switches, modifiers :
        See :mod:`models.dynamics`.
    crediting : dict
        Overrides of the crediting rules (``monitoring_period_years``, ``buffer_fraction``, ...).
    loss_table_level : str or None
        Level at which the event loss table is kept (``None``: no table; ``"portfolio"`` gives one
        row per event).
    scenario : str
        A label recorded with the result.
    per_path_budget_mib : float or None
        Memory (MiB) the levels' per-path values may take together, with the summary's transient memory for the
        largest (``None``: ``PER_PATH_BUDGET_BYTES``); levels beyond it report moments only
        (:attr:`per_path_budget_bytes`). The ``portfolio`` level is kept whatever the budget.
    """

    years: int
    paths: int
    seed: int
    levels: tuple[str, ...] = ("portfolio",)
    carbon_method: str = "bef"
    switches: SimulationSwitches = field(default_factory=SimulationSwitches)
    modifiers: Modifiers = field(default_factory=Modifiers)
    crediting: dict[str, Any] = field(default_factory=dict)
    start_year: int = DEFAULT_START_YEAR
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    tail_levels: tuple[float, ...] = DEFAULT_TAIL_LEVELS
    loss_table_level: str | None = None
    scenario: str = "baseline"
    per_path_budget_mib: float | None = None

    @property
    def per_path_budget_bytes(self) -> int:
        """The run's per-path memory budget in bytes (``per_path_budget_mib``, else ``PER_PATH_BUDGET_BYTES``)."""
        if self.per_path_budget_mib is None:
            return PER_PATH_BUDGET_BYTES
        return int(float(self.per_path_budget_mib) * 2**20)

    def validate(self) -> None:
        if not isinstance(self.years, int) or not 1 <= self.years <= 200:
            raise ValueError(f"years must be a whole number in [1, 200], got {self.years!r}")
        if not isinstance(self.paths, int) or not 1 <= self.paths <= 10_000_000:
            raise ValueError(f"paths must be a whole number in [1, 10000000], got {self.paths!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be a whole number in [0, 2**63), got {self.seed!r}")
        if self.carbon_method not in CARBON_METHODS:
            raise ValueError(f"carbon_method must be one of {CARBON_METHODS}, got {self.carbon_method!r}")
        bad = [lv for lv in self.levels if lv not in ALL_LEVELS]
        if bad or not self.levels:
            raise ValueError(f"unknown level(s) {bad}; use {', '.join(ALL_LEVELS)}")
        if self.loss_table_level is not None and self.loss_table_level not in ALL_LEVELS:
            raise ValueError(f"unknown loss_table_level {self.loss_table_level!r}")
        for q in self.quantiles:
            if not 0 < q < 1:
                raise ValueError(f"quantiles must lie in (0, 1), got {q}")
        for t in self.tail_levels:
            if not 0 < t < 1:
                raise ValueError(f"tail levels must lie in (0, 1), got {t}")
        if self.per_path_budget_mib is not None and not (
                isinstance(self.per_path_budget_mib, (int, float)) and 0 <= self.per_path_budget_mib < float("inf")):
            raise ValueError(f"per_path_budget_mib must be a number of MiB >= 0, got {self.per_path_budget_mib!r}")
        if not 1900 <= self.start_year <= 2200:
            raise ValueError(f"start_year must lie in 1900-2200, got {self.start_year}")
        if not isinstance(self.modifiers, Modifiers):
            raise ValueError(f"modifiers must be a models.dynamics.Modifiers, got {type(self.modifiers).__name__}")
        self.modifiers.validate(self.years)
