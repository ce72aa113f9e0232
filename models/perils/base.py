"""The one interface every peril implements: hazard -> vulnerability -> carbon loss.

A peril module defines a pydantic ``Params`` model (its block under ``perils.<name>`` in the region's
parameter file, every number sourced) and a :class:`Peril` subclass. The stand simulator
(:mod:`models.dynamics`) calls each enabled peril once a year, in a fixed order, with a
:class:`YearContext`; the peril returns the fraction of each affected parcel's carbon it destroys as
sparse :class:`PerilLosses`. Random numbers come only from ``ctx.rnd`` (keyed streams, see
:mod:`models.rng`): a peril uses separate named streams for hazard and for damage, so correlation is
always declared, never accidental.

Adding a peril is one new module plus its parameters: subclass :class:`Peril`, set ``name``,
``code``, ``order`` and ``Params``, and register it in :data:`models.perils.PERIL_CLASSES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # pragma: no cover
    from models.parameters import ModelParameters
    from models.portfolio import Portfolio
    from models.rng import KeyedRandom


class PerilParams(BaseModel):
    """Base of every peril's parameter block: strict, frozen, with an ``enabled`` switch."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True


@dataclass
class StandState:
    """Per (path, parcel) state of a block of paths. Arrays have shape (n_paths, n_parcels).

    Attributes
    ----------
    carbon_tc_per_ha : ndarray
        Current total (above + below ground) biomass carbon, tC/ha, as the simulator last computed it
        (after growth of this year, before this peril).
    age_years : ndarray
        Stand age at the start of the simulated year (in year 0 the portfolio's stated age: the
        stands age after the year's perils); negative while a destroyed stand waits to be replanted,
        and for the rest of the year of its loss.
    weakened_until : ndarray of int16
        Last simulation year of the pair's cascade window after wind or ice breakage (dead fuel,
        weakened pines), -1 for none. The pair is weakened this year when ``weakened_until >= year``;
        breakage in a year opens its window from the next year on (the simulator writes it after
        the year's last peril). Two bytes a pair instead of a float32 multiplier per peril: the
        multipliers follow from it (:meth:`fire_multiplier_at`, :meth:`pest_multiplier_at`).
    year : int
        The simulation year the state is at.
    fire_weakened_multiplier, pest_weakened_multiplier : numpy.float32
        Multiplier on the burn probability, and on pine wilt infection and mortality, of a weakened
        pair (1 elsewhere).
    """

    carbon_tc_per_ha: np.ndarray
    age_years: np.ndarray
    weakened_until: np.ndarray
    year: int = 0
    fire_weakened_multiplier: np.float32 = np.float32(1.0)
    pest_weakened_multiplier: np.float32 = np.float32(1.0)

    def weakened(self, pp: np.ndarray | None = None, qq: np.ndarray | None = None) -> np.ndarray:
        """Whether pairs (all pairs when ``pp`` is None) are weakened this year."""
        wu = self.weakened_until if pp is None else self.weakened_until[pp, qq]
        return wu >= self.year

    def fire_multiplier_at(self, pp: np.ndarray | None = None, qq: np.ndarray | None = None) -> np.ndarray:
        """Cascade multiplier on the burn probability at pairs (all pairs when ``pp`` is None), float32."""
        return np.where(self.weakened(pp, qq), np.float32(self.fire_weakened_multiplier), np.float32(1.0))

    def pest_multiplier_at(self, pp: np.ndarray | None = None, qq: np.ndarray | None = None) -> np.ndarray:
        """Cascade multiplier on pine wilt infection and mortality at pairs, float32."""
        return np.where(self.weakened(pp, qq), np.float32(self.pest_weakened_multiplier), np.float32(1.0))


@dataclass
class YearContext:
    """What a peril may look at in one simulation year.

    ``year`` is the 0-based simulation year and ``calendar_year`` the year it stands for; the keyed
    random streams must be called with ``year``. ``drought`` marks the paths in a regional drought
    year (set by the drought peril, read by fire). ``hazard_multiplier`` and ``severity_multiplier``
    come from the climate trend and the stress scenario, and from the parameter set's draws of the
    peril's frequency and severity (``ForestSimulator.frequency_multipliers``,
    ``severity_multipliers``): peril name -> scalar or (n_paths,) array.
    ``forced_events`` carries scenario-imposed events for this year (peril name -> list of dicts).
    With ``independent`` set, perils drop every declared spatial and temporal correlation
    (for comparison runs): each parcel then draws its own hazard.
    """

    year: int
    calendar_year: int
    rnd: "KeyedRandom"
    stand: StandState
    drought: np.ndarray
    hazard_multiplier: dict[str, Any] = field(default_factory=dict)
    severity_multiplier: dict[str, Any] = field(default_factory=dict)
    forced_events: dict[str, list[dict]] = field(default_factory=dict)
    independent: bool = False

    def hazard(self, peril: str) -> Any:
        return self.hazard_multiplier.get(peril, 1.0)

    def severity(self, peril: str) -> Any:
        return self.severity_multiplier.get(peril, 1.0)


@dataclass
class PerilLosses:
    """Sparse losses of one peril in one year.

    Attributes
    ----------
    path_pos, parcel_pos : ndarray of int
        Positions in the block (not global ids) of the affected (path, parcel) pairs. A pair appears
        at most once per peril and year.
    loss_fraction : ndarray of float
        Share of the parcel's current carbon destroyed, in (0, 1].
    event : ndarray of int
        Event index within (path, year, peril): 0 for a regional event, a running number for
        independent events such as separate fires.
    stand_replacing : ndarray of bool
        The stand is destroyed and restarts from age 0 after the replanting delay.
    """

    path_pos: np.ndarray
    parcel_pos: np.ndarray
    loss_fraction: np.ndarray
    event: np.ndarray
    stand_replacing: np.ndarray

    @classmethod
    def empty(cls) -> "PerilLosses":
        z = np.empty(0, dtype=np.int64)
        return cls(z, z.copy(), np.empty(0), z.copy(), np.empty(0, dtype=bool))

    @classmethod
    def from_dense(cls, fraction: np.ndarray, event: int | np.ndarray = 0,
                   stand_replacing: np.ndarray | None = None) -> "PerilLosses":
        """From a dense (n_paths, n_parcels) array of loss fractions (zeros are dropped).

        ``event`` may be a scalar or an array of the same shape; ``stand_replacing`` a boolean
        array of that shape.
        """
        p, q = np.nonzero(fraction > 0)
        ev = np.full(p.shape, event, dtype=np.int64) if np.isscalar(event) else np.asarray(event)[p, q]
        sr = np.zeros(p.shape, bool) if stand_replacing is None else stand_replacing[p, q]
        return cls(p.astype(np.int64), q.astype(np.int64), np.minimum(fraction[p, q], 1.0), ev.astype(np.int64), sr)

    def __len__(self) -> int:
        return int(self.path_pos.size)


class Peril(ABC):
    """A peril that destroys carbon.

    Subclasses set ``name`` (the key of its parameter block), ``code`` (a small stable integer used
    in event ids), ``order`` (the simulator applies perils in increasing order) and ``Params``.
    ``__init__`` precomputes everything that depends only on the portfolio (per-parcel base rates,
    spatial structures); :meth:`init_state` makes any per-path state; :meth:`step` runs one year.
    """

    name: ClassVar[str]
    code: ClassVar[int]
    order: ClassVar[int]
    Params: ClassVar[type[PerilParams]]

    def __init__(self, params: PerilParams, model: "ModelParameters", portfolio: "Portfolio"):
        self.params = params
        self.model = model
        self.portfolio = portfolio

    def init_state(self, n_paths: int, rnd: "KeyedRandom", years: int | None = None) -> Any:
        """Per-path state for a block of paths (None when the peril keeps none).

        ``years`` is the run's horizon when the simulator knows it (a peril may prepare its whole
        run ahead, as pine wilt's landscape epidemic does), None when a caller steps years itself.
        """
        return None

    def notes(self) -> dict[str, Any]:
        """Facts about how this peril was set up for the portfolio that a result should record (for
        example pine wilt's hosts outside the region's landscape); empty for most perils."""
        return {}

    @abstractmethod
    def step(self, ctx: YearContext, state: Any) -> PerilLosses:
        """Losses of this year. May update ``state`` in place."""

    def stands_replaced(self, state: Any, path_pos: np.ndarray, parcel_pos: np.ndarray) -> None:
        """The stands at (``path_pos``, ``parcel_pos``) (block positions) were replaced: destroyed by a
        stand-replacing loss, or clear-felled at their rotation age, and replanted. The simulator calls
        it on every peril's state right after the replacement, before any later peril of the year runs;
        a peril whose per-path state belongs to the stand (pine wilt's infection) resets it there. Most
        perils keep none: nothing to do."""
        return None

    @classmethod
    def validate_params(cls, raw: dict[str, Any], model_file: Any) -> PerilParams:
        """Validate this peril's parameter block (override to cross-check against the model)."""
        return cls.Params.model_validate(raw)

    @classmethod
    def attach_data(cls, params: PerilParams, base_dir: "Path") -> PerilParams:
        """Read and check the data files the block names (relative to ``base_dir``, the parameter
        file's folder) and attach them to ``params``; raise ``ValueError`` naming the file on a
        problem. Most perils name none."""
        return params
