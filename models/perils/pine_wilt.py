"""Pine wilt disease (松材线虫病, *Bursaphelenchus xylophilus*, vector *Monochamus alternatus*).

A spatial epidemic on pine hosts, in two layers.

**Landscape layer: a grid metapopulation.** Parcel centroids are projected to km (equirectangular
at ``grid_reference_latitude_deg``) and binned into square cells of ``cell_size_km``. The grid is the
region's landscape (``landscape``, :mod:`models.perils.pine_wilt_landscape`): the cells of the
region's registry of pine parcels, dilated by ``grid_buffer_km`` (the forest between registry
parcels is assumed to carry pines too, so the epidemic can cross it), extended in the same way around
any host parcel of the portfolio that lies beyond it. The landscape's cells of such an extended grid
follow the region's own process every year (the extension feels the region's epidemic but does not
feed back into it). So every portfolio of the region -- one loan, an insurer's book, the whole city
-- runs the same epidemic on the region's cells, and a parcel's pine wilt losses do not depend on
which other parcels are run with it (:meth:`PineWilt.notes` records hosts beyond the landscape).
Without a ``landscape`` entry the grid is the portfolio's own host cells, dilated (numbers versions 1
and 2). Each path holds one infected/susceptible flag per cell (an SI process: a cell stays infected). Each year a susceptible
cell ``i`` is infected with probability ``1 - exp(-h_i)``, with hazard

``h_i = lambda * sum_{j: 0 < d_ij <= R} c_j I_j  +  mu * sum_j c_j I_j / n_cells  +  iota``

where ``I_j`` is the infection flag of cell ``j``, ``R = spread_radius_km`` the reach of natural
vector flight in a year, ``lambda = local_transmission_rate``, ``mu = long_distance_jump_rate``
(human-mediated jumps per infected cell and year, landing uniformly on the grid; with parameter
uncertainty on, ``lambda`` and ``mu`` are the file's rates times mean-one lognormal multipliers drawn
once per parameter set, :class:`SpreadDraws`, from ``peril_uncertainty.pine_wilt``), ``iota =
introduction_rate_per_cell`` (wood brought in from outside), and ``c_j`` the source cell's
infectivity: the area-weighted ``management.pest_control`` multiplier of its host parcels in the
registry (sanitation felling and wood quarantine slow the spread), ``background_pest_control`` for
cells without host parcels (cells of the extension: the portfolio's own host parcels). Inside the
landscape a portfolio's pest control acts on its parcels' infection and mortality, not on the
spread. The neighbour sum is one sparse (cells x cells) matrix built once with a
KD-tree; nothing is all-pairs. Its numpy definition (:meth:`PineWilt.cell_hazard`) is a sparse matmul
over all paths; the compiled year (:mod:`models.perils._pine_wilt_kernels`) keeps each path's
infected-neighbour masks between years (:class:`CellTracking`, part of the state) and gives the same
float32 numbers and decisions. On a line of
cells with ``R`` < 2 cells and infectivity ``c`` the front advances one cell a year with probability
``1 - exp(-lambda c)``, so its mean speed is that probability times ``cell_size_km`` km/yr.

Initial state: in the counties of ``initial_epidemic`` (Lishui has cases in Jingning), each cell
holding host parcels (a landscape cell by its label: the township holding most of its host area) is
infected at the start with ``cell_infection_probability``.

**Footprint.** The cell process depends on the landscape, the seed and the path alone, so a run
computes it for its whole horizon at once (:meth:`PineWilt.compute_footprint`: the year each cell is
infected) and keeps it per 32-path block in a process-wide cache; a later run on the same landscape
and seed (the next loan in a service, a stress scenario's baseline) reads it instead of simulating
the cells again, bit for bit the same. A forced outbreak makes a run's epidemic its own from that
year on: it goes on year by year from the footprint's flags.

**Parcel layer.** A host parcel (tree species with ``pine_share`` > 0, below the altitude limit) in
an infected cell becomes infected in a year with probability

``p = parcel_infection_probability * pine_share * a(elevation) * m_control * pest_multiplier * hazard``

where ``a`` is 1 below ``altitude_limit_m - altitude_taper_m`` and falls linearly to 0 at
``altitude_limit_m`` (no infection above it), ``m_control`` the ``management.pest_control``
multiplier of the parcel's level, ``pest_multiplier`` the cascade multiplier of storm-weakened pines
and ``hazard`` the multiplier ``ctx.hazard("pine_wilt")`` (scenario x the parameter set's frequency
multiplier; the landscape's cell spread does not take it).

Once infected, a parcel's pines die at a yearly rate ``m`` for ``outbreak_years`` years: the
uncontrolled rate for pest-control level ``none``, otherwise the controlled rate plus the
``sanitation_removal_rate`` of pines felled around infected trees (carbon removed too). The mortality
part is multiplied by ``ctx.severity("pine_wilt")`` (scenario x the parameter set's severity draw, on
the controlled and the uncontrolled rate alike) and the cascade ``pest_multiplier``. The share of
the original pines still standing after ``n`` years is ``(1 - m)^n``; the loss of a year is
``m`` times the pine share of the parcel's current carbon, ``s = s0 L / (s0 L + 1 - s0)`` with ``s0``
the species' pine share and ``L`` the surviving pine fraction, so a mixed stand loses only pines.
After ``outbreak_years`` the episode is over and the parcel is not infected again (survivors and
regrowth are treated as non-host, e.g. replanted broadleaf). A stand that is replaced -- clear-felled
at its rotation age, or destroyed by a stand-replacing loss of any peril -- ends its episode at once
(its infected pines are gone, so the outbreak does not go on killing the replanted seedlings), and the
replant, the parcel's own species and so a host, is susceptible again as a stand never infected,
once its age is above 0 (:meth:`PineWilt.stands_replaced`).

State per (path, parcel) is kept only for host parcels: years since infection (int16, -1 while
susceptible) and the surviving pine fraction (float32); per (path, cell) one infection flag, plus the
compiled year's bookkeeping (a copy of the flags and a neighbour mask, 2 bytes with up to 8 neighbours).

**Randomness.** Streams ``pine_wilt.initial`` and ``pine_wilt.spread`` are keyed by stable cell keys
(:func:`models.rng.group_keys` of ``"pine_wilt:<ix>:<iy>"``), ``pine_wilt.parcel`` by parcel keys, so
a path's draws do not depend on how paths are blocked. The spread rates' multipliers (stream
``peril.param.spread``) are keyed by parameter set and rate name.

**Independent mode** (``ctx.independent``): no contagion. Each host parcel is infected with
probability ``pi_c(t) * p``, where ``pi_c(t)`` is the marginal probability that its cell is
infected in year ``t`` under the spatial model, estimated once per seed from a shadow run of the
cell process on ``independent_shadow_paths`` paths (streams ``pine_wilt.shadow.*``). The yearly
marginal infection probability of a susceptible parcel is therefore the spatial model's, up to that
Monte Carlo error; cumulative infection matches to first order in ``p``.

**Forced events**: ``ctx.forced_events["pine_wilt"]`` is a list of dicts with keys ``counties``
and/or ``townships`` (lists of names; a township may be written ``county/township``; names the portfolio does not hold hit
nothing, as for the weather perils) and optionally
``parcel_probability`` (default ``forced_outbreak_parcel_probability``). The cells of the named areas
become infected this year and their host parcels are infected with at least that probability
(times the same host factors).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from scipy import sparse
from scipy.spatial import cKDTree

from models._lru import lru_get, lru_put
from models.parameters.schema import Confidence, Sourced
from models.perils import footprint_store, register
from models.perils._weather import ForcedEventError, forced_number
from models.perils.base import Peril, PerilLosses, PerilParams, YearContext
from models.portfolio import MANAGEMENT_LEVELS
from models.perils._pine_wilt_kernels import (cell_year, cell_year_tracked, hazard_threshold_grid, parcel_year,
                                              record_infection_year)
from models.perils.pine_wilt_landscape import Landscape, landscape_csv, majority_labels, parse_landscape, read_landscape
from models.rng import KeyedRandom, group_keys, normal_from_uniform

# guards the lazily filled independent-mode shadow epidemic, shared by chunks running on threads
_SHADOW_LOCK = threading.Lock()

KM_PER_DEGREE = 6371.0088 * np.pi / 180.0  # mean Earth radius (IUGG) times one degree in radians

#: a cell's footprint year when it is not infected within the horizon
NEVER = np.int16(np.iinfo(np.int16).max)
_NO_YEARS = np.empty((0, 0), dtype=np.int16)  # cell_year_tracked: no footprint to record into
#: paths per footprint block: the engine's path block (chunks are whole blocks)
PATH_BLOCK = 32
#: the process-wide footprint cache: (landscape token, seed, first path, paths) -> (years, int16 block)
_FOOTPRINTS: "OrderedDict[tuple, tuple[int, np.ndarray]]" = OrderedDict()
_FOOTPRINT_BYTES = 0
_FOOTPRINT_LOCK = threading.Lock()
#: its bound (least recently used blocks go first): 10,000 paths of the 2,666-cell Lishui landscape take 51 MiB
FOOTPRINT_CACHE_BYTES = 128 * 2**20
#: the pressure tables built (:func:`shared_pressure_table`), by the neighbour matrix they tabulate: every
#: portfolio inside a region's landscape, and every switch setting of a run (a valuation's drivers), has the same
_PRESSURE_TABLES: dict[str, tuple[np.ndarray, np.ndarray]] = {}
_PRESSURE_TABLES_MAX = 8
#: the region's grids built (:func:`shared_landscape_grid`), by landscape SHA-256 and grid settings
_LANDSCAPE_GRIDS: dict[tuple, "CellGrid"] = {}
_LANDSCAPE_GRIDS_MAX = 4
#: a forced outbreak's numeric keys and their range (low, high, low open?), checked when a scenario is read and
#: when the outbreak is applied
FORCED_RANGES = {"parcel_probability": (0.0, 1.0, False)}
#: draw keys of the two spread multipliers (stream ``peril.param.spread``)
_SPREAD_KEYS = group_keys(["pine_wilt:local_transmission", "pine_wilt:long_distance_jump"])


@dataclass(frozen=True)
class SpreadDraws:
    """The landscape's uncertain spread rates: mean-one lognormal multipliers of the local
    transmission rate and of the long-distance jump rate, drawn once per parameter set.

    Paths ``k m .. k m + m - 1`` (``m = parameter_set_size``) share a draw, as they share the
    growth curves' and the perils' other draws (``models.dynamics.ForestSimulator``). A multiplier is
    ``exp(s z - s^2 / 2)`` with ``s`` the log-sd from the parameter file's ``peril_uncertainty``
    and ``z`` a standard normal keyed by parameter set and rate (stream ``peril.param.spread``), so
    a path's rates depend on its id and the seed alone: the footprint of a block of paths is still
    a function of the landscape, the seed, the paths and these three numbers (:attr:`token`).
    """

    local_log_sd: float
    jump_log_sd: float
    parameter_set_size: int

    def multipliers(self, rnd: KeyedRandom) -> tuple[np.ndarray, np.ndarray]:
        """Each path's (local transmission, long-distance jump) multipliers, float64 (n_paths,)."""
        sets = rnd.by_parameter_set(self.parameter_set_size)  # keyed_uniform below does not use its parcels
        z = normal_from_uniform(sets.keyed_uniform("peril.param.spread", 0, _SPREAD_KEYS))
        s = np.array([self.local_log_sd, self.jump_log_sd])
        m = np.exp(s[None, :] * z - 0.5 * s[None, :] ** 2)
        return m[:, 0], m[:, 1]

    @property
    def token(self) -> str:
        """What the footprint depends on besides the landscape, the seed and the paths."""
        return repr((float(self.local_log_sd), float(self.jump_log_sd), int(self.parameter_set_size)))




class InitialEpidemic(BaseModel):
    """Where the disease already is when the simulation starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    counties: list[str]
    cell_infection_probability: Sourced
    source: str
    confidence: Confidence
    note: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "InitialEpidemic":
        if not 0 <= self.cell_infection_probability.value <= 1:
            raise ValueError("initial_epidemic.cell_infection_probability must lie in [0, 1]")
        return self


class LandscapeRef(BaseModel):
    """``perils.pine_wilt.landscape``: the region's landscape file (see :mod:`models.perils.pine_wilt_landscape`).

    ``file`` is read relative to the parameter file's folder (else the shipped file of that name)
    and must have the SHA-256 ``sha256``, so the parameter hash every result records covers it.
    ``cell_size_km``, ``grid_reference_latitude_deg``, ``grid_buffer_km`` and ``altitude_limit_m``
    are the block's values it was built with (they decide which cells and hosts exist): they must
    equal the block's, or the landscape must be rebuilt. Species' ``pine_share`` also decides which
    parcels are hosts; a change there needs a rebuild too (not checked). Pest-control multipliers are
    applied when a run starts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    file: str
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    cell_size_km: float
    grid_reference_latitude_deg: float
    grid_buffer_km: float
    altitude_limit_m: float
    source: str
    confidence: Confidence
    note: str | None = None


class PineWiltParams(PerilParams):
    """The ``perils.pine_wilt`` block (see the module docstring for how each number is used)."""

    cell_size_km: Sourced
    grid_buffer_km: Sourced
    grid_reference_latitude_deg: Sourced
    spread_radius_km: Sourced
    local_transmission_rate: Sourced
    long_distance_jump_rate: Sourced
    introduction_rate_per_cell: Sourced
    initial_epidemic: InitialEpidemic
    parcel_infection_probability: Sourced
    forced_outbreak_parcel_probability: Sourced
    altitude_limit_m: Sourced
    altitude_taper_m: Sourced
    mortality_rate_uncontrolled: Sourced
    mortality_rate_controlled: Sourced
    sanitation_removal_rate: Sourced
    outbreak_years: Sourced
    background_pest_control: Literal["none", "basic", "enhanced"] = "basic"
    independent_shadow_paths: int = Field(default=256, ge=16, le=100_000)
    # None: the landscape is built from each run's own portfolio (its host parcels' cells, dilated)
    landscape: LandscapeRef | None = None
    # the landscape file's content and SHA-256, attached by PineWilt.attach_data when the file is loaded
    _landscape: Landscape | None = PrivateAttr(default=None)
    _landscape_sha256: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> "PineWiltParams":
        def rng(name: str, lo: float, hi: float) -> None:
            v = getattr(self, name).value
            if not lo <= v <= hi:
                raise ValueError(f"pine_wilt.{name} = {v} is outside [{lo}, {hi}]")

        rng("cell_size_km", 0.1, 100.0)
        rng("grid_buffer_km", 0.0, 200.0)
        rng("grid_reference_latitude_deg", -80.0, 80.0)
        rng("spread_radius_km", 0.0, 100.0)
        rng("local_transmission_rate", 0.0, 100.0)
        rng("long_distance_jump_rate", 0.0, 10.0)
        rng("introduction_rate_per_cell", 0.0, 1.0)
        for name in ("parcel_infection_probability", "forced_outbreak_parcel_probability",
                     "mortality_rate_uncontrolled", "mortality_rate_controlled", "sanitation_removal_rate"):
            rng(name, 0.0, 1.0)
        rng("altitude_limit_m", 0.0, 9000.0)
        rng("altitude_taper_m", 0.0, 5000.0)
        d = self.outbreak_years.value
        if d != int(d) or not 1 <= d <= 100:
            raise ValueError(f"pine_wilt.outbreak_years must be a whole number in [1, 100], got {d}")
        ls = self.landscape
        if ls is not None:
            for name in ("cell_size_km", "grid_reference_latitude_deg", "grid_buffer_km", "altitude_limit_m"):
                if getattr(ls, name) != getattr(self, name).value:
                    raise ValueError(f"pine_wilt.landscape.{name} = {getattr(ls, name)} differs from "
                                     f"pine_wilt.{name} = {getattr(self, name).value}: rebuild the landscape "
                                     f"(`carbon-risk landscape`, with the landscape entry removed) or restore the value")
        return self

    def with_landscape(self, landscape: Landscape, note: str) -> "PineWiltParams":
        """This block on another landscape of the same cells (a management change of a stress lever).

        The copy names the new landscape's SHA-256 (of its CSV, :func:`landscape_csv`) and ``note``
        (what changed, from which file); its footprints are cached apart from the file's.
        """
        if self.landscape is None:
            raise ValueError("pine_wilt has no landscape to change")
        data = landscape_csv(landscape)
        sha = hashlib.sha256(data).hexdigest()
        ref = self.landscape.model_copy(update={"sha256": sha, "note": f"{note} (from {self.landscape.file})"})
        out = self.model_copy(update={"landscape": ref})
        out._landscape = parse_landscape(data, f"{self.landscape.file} + {note}")  # what the hash describes
        out._landscape_sha256 = sha
        return out

    @property
    def landscape_data(self) -> Landscape | None:
        """The region's landscape (None: each run builds its own from its portfolio)."""
        if self.landscape is None:
            return None
        if self._landscape is None or self._landscape_sha256 != self.landscape.sha256.lower():
            # validated without PineWilt.attach_data, or copied with another landscape entry: never fall
            # back silently, never run on another file's cells
            raise ValueError("pine_wilt.landscape names a file that was not read: load the parameter file with "
                             "models.parameters.load_parameters")
        return self._landscape


@dataclass
class PineWiltState:
    """Per-path state of a block of paths.

    Attributes
    ----------
    cell_infected : ndarray of bool, shape (n_paths, n_cells), or None
        The cells' infection flags when the block steps its landscape year by year itself (a state
        made without a horizon, or from the year a forced outbreak changes this run's epidemic);
        None while the block reads the shared landscape footprint (:meth:`PineWilt.footprint`).
    years_infected : ndarray of int16, shape (n_paths, n_hosts)
        Mortality years already applied since infection; -1 while susceptible (also once a replaced
        stand's replant is, :meth:`PineWilt.stands_replaced`); ``outbreak_years`` once the episode is
        over.
    pine_left : ndarray of float32, shape (n_paths, n_hosts)
        Share of the parcel's original pines still standing (1 until infected).
    cell_tracking : CellTracking or None
        The compiled cell year's bookkeeping for ``cell_infected`` (None where a cell has over 64
        neighbours). ``cell_infected`` may be changed from outside: the next year picks that up.
    horizon : int or None
        The run's years, when the simulator said them: the footprint covers them.
    host_cell_year : ndarray of int16, shape (n_paths, n_host_cells), or None
        The footprint of the cells holding this portfolio's hosts (the year each was infected; -1
        at the start, :data:`NEVER` not within the horizon), read lazily.
    own_epidemic : bool
        A forced outbreak has made this run's epidemic its own: the region's process no longer
        drives the landscape's cells of an extended grid.
    cell_rates : tuple of two float32 arrays (n_paths,), or None
        The paths' spread rates (:meth:`PineWilt.path_rates`) while the block steps its cells
        itself, drawn once (they do not change from year to year).
    """

    cell_infected: np.ndarray | None
    years_infected: np.ndarray
    pine_left: np.ndarray
    cell_tracking: "CellTracking | None" = None
    horizon: int | None = None
    host_cell_year: np.ndarray | None = None
    own_epidemic: bool = False
    cell_rates: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class CellTracking:
    """What the tracked cell kernel keeps between years (see ``cell_year_tracked``).

    ``known`` (n_paths, n_cells) bool: the flags the rest was built from; ``mask`` (n_paths,
    n_cells) unsigned: bit ``b`` set when the ``b``-th neighbour source of the cell is infected;
    ``emitted_sum`` (n_paths,) float64 and ``n_infected`` (n_paths,) int64. All start at zero: the
    first year picks up the initial flags.
    """

    known: np.ndarray
    mask: np.ndarray
    emitted_sum: np.ndarray
    n_infected: np.ndarray

    @classmethod
    def empty(cls, n_paths: int, n_cells: int, mask_dtype) -> "CellTracking":
        return cls(np.zeros((n_paths, n_cells), dtype=bool), np.zeros((n_paths, n_cells), dtype=mask_dtype),
                   np.zeros(n_paths), np.zeros(n_paths, dtype=np.int64))


@dataclass(frozen=True)
class CellGrid:
    """The landscape grid: cell integer coordinates, centres (km), keys and the neighbour matrix."""

    ij: np.ndarray  # (n_cells, 2) int64 grid coordinates
    centre_km: np.ndarray  # (n_cells, 2)
    keys: np.ndarray  # (n_cells,) uint64
    neighbours: sparse.csr_matrix  # (n_cells, n_cells) 0/1, symmetric, zero diagonal

    @property
    def n_cells(self) -> int:
        return int(self.ij.shape[0])


def project_km(latitude: np.ndarray, longitude: np.ndarray, reference_latitude_deg: float) -> np.ndarray:
    """Equirectangular projection (km) at a fixed reference latitude: shape (n, 2) as (x, y)."""
    x = np.asarray(longitude, float) * KM_PER_DEGREE * np.cos(np.deg2rad(reference_latitude_deg))
    y = np.asarray(latitude, float) * KM_PER_DEGREE
    return np.column_stack([x, y])


def build_grid(cells_ij: np.ndarray, cell_size_km: float, buffer_km: float, radius_km: float,
               fixed_ij: np.ndarray | None = None) -> CellGrid:
    """Grid of the occupied cells dilated by ``buffer_km``, with its sparse neighbour matrix.

    Parameters
    ----------
    cells_ij : ndarray of int, shape (n, 2)
        Grid coordinates of the occupied cells (duplicates allowed).
    cell_size_km, buffer_km, radius_km : float
        Cell side, dilation radius, and the reach of one year's natural spread (km); cells whose
        centres lie within ``radius_km`` of each other are neighbours.
    fixed_ij : ndarray of int, shape (m, 2), optional
        Cells taken as they are (a region's landscape, already dilated); the grid is their union
        with the dilated ``cells_ij``. Cells are sorted by (x, y) either way.
    """
    occ = np.unique(np.asarray(cells_ij, dtype=np.int64).reshape(-1, 2), axis=0)
    r = int(np.floor(buffer_km / cell_size_km + 1e-9))
    if r > 0 and occ.size:
        d = np.arange(-r, r + 1)
        dx, dy = np.meshgrid(d, d, indexing="ij")
        keep = dx**2 + dy**2 <= (buffer_km / cell_size_km) ** 2 + 1e-9
        offsets = np.column_stack([dx[keep], dy[keep]])
        occ = np.unique((occ[:, None, :] + offsets[None, :, :]).reshape(-1, 2), axis=0)
    if fixed_ij is not None:
        occ = np.unique(np.concatenate([occ, np.asarray(fixed_ij, dtype=np.int64).reshape(-1, 2)]), axis=0)
    centre = (occ + 0.5) * cell_size_km
    n = occ.shape[0]
    if n > 1 and radius_km > 0:
        pairs = cKDTree(centre).query_pairs(r=radius_km * (1 + 1e-9), output_type="ndarray")
    else:
        pairs = np.empty((0, 2), dtype=np.int64)
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    w = sparse.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n, n))
    keys = group_keys([f"pine_wilt:{i}:{j}" for i, j in occ])
    return CellGrid(ij=occ, centre_km=centre, keys=keys, neighbours=w)


def shared_landscape_grid(land: Landscape, land_sha256: str, cell_size_km: float, buffer_km: float,
                          radius_km: float) -> CellGrid:
    """:func:`build_grid` of a region's landscape alone (no host outside it), built once per process
    (read-only arrays).

    Every portfolio whose pine hosts all lie inside the region's landscape runs on the same grid; a new
    pledge used to rebuild it (its 2,666 cells' keys and neighbour pairs: 8 of a loan simulator's 12 ms
    set-up). Keyed by the landscape file's SHA-256, which the parameter file names and the parameter hash
    covers, and by the grid settings.
    """
    key = (land_sha256.lower(), float(cell_size_km), float(buffer_km), float(radius_km))
    grid = lru_get(_LANDSCAPE_GRIDS, key)
    if grid is None:
        grid = build_grid(np.empty((0, 2), dtype=np.int64), cell_size_km, buffer_km, radius_km, fixed_ij=land.ij)
        for a in (grid.ij, grid.centre_km, grid.keys, grid.neighbours.data, grid.neighbours.indices,
                  grid.neighbours.indptr):
            a.setflags(write=False)
        lru_put(_LANDSCAPE_GRIDS, key, grid, _LANDSCAPE_GRIDS_MAX)
    return grid


def _neighbour_bits(w: sparse.csr_matrix, w_t: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray] | None:
    """Bit of each neighbour entry for the tracked cell kernel, or None when a cell has over 64 sources.

    Entry ``k`` of ``w`` (row = source ``j``, column = target ``i``) gets ``1 << b`` with ``b`` the
    position of ``j`` in the target's sorted transposed row; the mask type is the narrowest unsigned
    integer holding the largest neighbourhood. Returns ``(bit_value, bit)`` with ``bit[b] = 1 << b``.
    """
    degree = int(np.diff(w_t.indptr).max()) if w_t.shape[0] else 0
    if degree > 64:
        return None
    dtype = next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if np.dtype(t).itemsize * 8 >= degree)
    bit = (np.uint64(1) << np.arange(np.dtype(dtype).itemsize * 8, dtype=np.uint64)).astype(dtype)
    n = w.shape[0]
    source = np.repeat(np.arange(n), np.diff(w.indptr))
    target = w.indices
    # position of (source, target) in the target's transposed row: rank among the target's sources
    order = np.lexsort((source, target))
    rank = np.empty(w.nnz, dtype=np.int64)
    starts = w_t.indptr[target[order]]
    rank[order] = np.arange(w.nnz) - starts
    return np.ascontiguousarray(bit[rank]), bit


def pressure_table(w_t: sparse.csr_matrix, bit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every local pressure a cell can see, tabulated for 8-bit neighbour masks.

    Returns ``(index, pressures)``: ``pressures`` the distinct values (float32, ascending, first
    0), ``index[256 i + m]`` the position in it of cell ``i``'s pressure with infected-source mask
    ``m``, that is its sources' ``w_t`` terms for the set bits of ``m`` summed in ascending order in
    float32 (the sum :func:`cell_year_tracked` and the reference :meth:`PineWilt.cell_hazard`
    take). Masks with bits beyond a cell's sources never occur; their entries are filled all the
    same. The index takes ``256 n_cells`` entries (0.5 MB for 2,000 cells). Wider masks (more than 8
    neighbours) give an empty index: the kernel then sums from the mask.
    """
    n = w_t.shape[0]
    if bit.dtype != np.uint8 or n == 0:
        return np.empty(0, dtype=np.uint8), np.zeros(1, dtype=np.float32)
    masks = np.arange(256)
    n_sources = np.diff(w_t.indptr)
    padded = np.append(w_t.data.astype(np.float32), np.float32(0.0))  # past the end: a zero term
    acc = np.zeros((n, 256), dtype=np.float32)
    for b in range(8):  # float32 additions in bit order, as the kernel's sum
        term = padded[np.where(b < n_sources, w_t.indptr[:-1] + b, w_t.nnz)]
        acc += np.where((masks & (1 << b)) != 0, term[:, None], np.float32(0.0))
    pressures, index = np.unique(acc.ravel(), return_inverse=True)  # mask 0 gives pressures[0] = 0
    dtype = np.uint8 if pressures.size <= 256 else np.uint16 if pressures.size <= 65536 else np.uint32
    return index.astype(dtype), pressures.astype(np.float32)


def shared_pressure_table(w_t: sparse.csr_matrix, bit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pressure_table`, built once per process for each neighbour matrix (read-only arrays).

    Tabulating a landscape's pressures takes most of a pine wilt peril's set-up (50 of the 65 ms of a
    loan's simulator on the Lishui landscape: a sort of 256 values a cell), and every portfolio inside
    the landscape tabulates the same matrix: a new loan, or each driver of a valuation's attribution.
    """
    h = hashlib.sha256()
    for a in (w_t.indptr, w_t.indices, w_t.data, bit):
        h.update(str(a.dtype).encode())
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(b"|")
    key = h.hexdigest()
    table = lru_get(_PRESSURE_TABLES, key)
    if table is None:
        table = pressure_table(w_t, bit)
        for a in table:
            a.setflags(write=False)
        lru_put(_PRESSURE_TABLES, key, table, _PRESSURE_TABLES_MAX)
    return table


def _cell_codes(*cells: np.ndarray) -> list[np.ndarray]:
    """One integer per cell of each (n, 2) integer coordinate array, the same cell the same code in all
    of them (row-major over the arrays' joint bounding box)."""
    full = [c for c in cells if c.shape[0]]
    if not full:
        return [np.zeros(0, dtype=np.int64) for _ in cells]
    lo = np.min([c.min(axis=0) for c in full], axis=0)
    span = np.max([c.max(axis=0) for c in full], axis=0) - lo + 1
    return [(c[:, 0] - lo[0]) * span[1] + (c[:, 1] - lo[1]) for c in cells]


def _rows_in(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row of the (n, 2) integer array ``a``, whether it is a row of ``b``."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros(a.shape[0], dtype=bool)
    code_a, code_b = _cell_codes(a, b)
    return np.isin(code_a, code_b)


def _match_names(labels: np.ndarray, name: str, full: np.ndarray | None = None) -> np.ndarray:
    """Parcels whose label equals ``name`` (or whose ``county/township`` path ends with it), else
    whose label starts with it (``景宁`` for ``景宁畲族自治县``)."""
    m = labels == name
    if full is not None and "/" in name:
        m |= (full == name) | np.char.endswith(full.astype(str), "/" + name)
    if not m.any():
        m = np.char.startswith(labels.astype(str), name)
    return m


class _NoParcels:
    """An empty portfolio: what :meth:`PineWilt.for_landscape` runs the landscape for."""

    n_parcels = 0
    species_code = pest_control_code = np.empty(0, dtype=np.intp)
    elevation_m = latitude = longitude = area_ha = np.empty(0)
    keys = np.empty(0, dtype=np.uint64)

    @property
    def frame(self):
        import pandas as pd

        return pd.DataFrame({"county": pd.Series([], dtype=str), "township": pd.Series([], dtype=str)})


def warm_footprint(model, seed: int, paths: int, years: int, block_paths: int = 1024,
                   spread: SpreadDraws | None | Literal["default"] = "default") -> int:
    """Compute the region's landscape footprint for paths ``0 .. paths-1`` into the shared cache.

    What a service does when it starts: its first loan on ``seed`` then reads the epidemic as the
    next ones do. ``spread`` must be the draws its runs take (``ForestSimulator.spread_draws`` of
    their switches, :func:`models.dynamics.spread_draws`), or the cache holds another epidemic:
    ``"default"`` (the default) takes those of the default switches, None the file's rates.
    Computed ``block_paths`` at a time (the cell state of a block is about 5 bytes a path and cell).
    Returns the bytes the cache holds afterwards (0 without a landscape).
    """
    block = model.perils.get("pine_wilt")
    if block is None or not block.enabled or block.landscape_data is None:
        return 0
    peril = PineWilt.for_landscape(block, model)
    if spread == "default":
        from models.dynamics import SimulationSwitches, spread_draws  # the simulator's module imports this one

        spread = spread_draws(model, SimulationSwitches())
    peril.set_spread(spread)
    step = max(PATH_BLOCK, block_paths // PATH_BLOCK * PATH_BLOCK)
    for start in range(0, int(paths), step):
        ids = np.arange(start, min(int(paths), start + step), dtype=np.int64)
        peril.footprint(KeyedRandom(int(seed), ids, np.empty(0, dtype=np.uint64)), int(years),
                        np.empty(0, dtype=np.int64))
    return _FOOTPRINT_BYTES


def with_pest_control(model, portfolio, selected: np.ndarray, level: str, note: str):
    """Parameters on which pine wilt spreads as if ``portfolio``'s ``selected`` parcels had pest
    control ``level`` (:meth:`PineWilt.landscape_with_pest_control`), and the host area moved (ha).

    The parameters are ``model`` itself when pine wilt is off, has no landscape, or nothing moves;
    otherwise a copy whose pine wilt block names the changed landscape (``note`` says what changed),
    which keeps the parameter file's hash and records the change as its ``variant``.
    """
    import dataclasses

    block = model.perils.get(PineWilt.name)
    if block is None or not block.enabled or block.landscape is None:
        return model, 0.0
    changed, moved = PineWilt(block, model, portfolio).landscape_with_pest_control(selected, level)
    if moved <= 0.0:
        return model, 0.0
    new_block = block.with_landscape(changed, note)
    variant = f"pine_wilt.landscape sha256 {new_block.landscape.sha256} ({note})"
    return dataclasses.replace(model, perils={**model.perils, PineWilt.name: new_block},
                               variant="; ".join(v for v in (model.variant, variant) if v)), moved


@register
class PineWilt(Peril):
    """Pine wilt disease: a grid-metapopulation epidemic with parcel-level pine mortality."""

    name: ClassVar[str] = "pine_wilt"
    code: ClassVar[int] = 5
    order: ClassVar[int] = 50
    Params: ClassVar[type[PerilParams]] = PineWiltParams

    @classmethod
    def attach_data(cls, params: PineWiltParams, base_dir: Path) -> PineWiltParams:
        """Read the region's landscape file the block names (checked against its SHA-256)."""
        ref = params.landscape
        if ref is None:
            return params
        from models.parameters import PARAMETER_DIR

        # next to the parameter file; else the shipped one of that name (a copied parameter file keeps
        # finding it): the hash check makes either safe
        places = [Path(base_dir) / ref.file, PARAMETER_DIR / ref.file]
        found = next((q for q in places if q.is_file()), places[0])
        out = params.model_copy()
        out._landscape = read_landscape(found, ref.sha256)
        out._landscape_sha256 = ref.sha256.lower()
        return out

    @classmethod
    def for_landscape(cls, params: PineWiltParams, model) -> "PineWilt":
        """The peril on the region's landscape with no parcels: its cell process (and so its
        footprint) is the one every portfolio inside the landscape runs."""
        if params.landscape_data is None:
            raise ValueError("pine_wilt has no landscape: the epidemic's grid comes from each portfolio")
        return cls(params, model, _NoParcels())

    def __init__(self, params: PineWiltParams, model, portfolio):
        super().__init__(params, model, portfolio)
        p = params
        tables = model.tables
        sp = np.asarray(portfolio.species_code, dtype=np.intp)
        pine_share = tables.pine_share[sp]
        limit, taper = p.altitude_limit_m.value, p.altitude_taper_m.value
        elev = portfolio.elevation_m
        if taper > 0:
            alt = np.clip((limit - elev) / taper, 0.0, 1.0)
        else:
            alt = (elev < limit).astype(float)
        is_tree = ~tables.is_bamboo[sp]
        host = is_tree & (pine_share > 0) & (alt > 0)
        self.host_idx = np.flatnonzero(host).astype(np.int64)
        #: each parcel's host position (its column of the state's host arrays), -1 for a non-host
        self._host_of_parcel = np.full(host.size, -1, dtype=np.int64)
        self._host_of_parcel[self.host_idx] = np.arange(self.host_idx.size)
        control = np.array([model.file.management["pest_control"][lv].value for lv in MANAGEMENT_LEVELS])
        code = np.asarray(portfolio.pest_control_code, dtype=np.intp)[self.host_idx]
        self.pine_share = pine_share[self.host_idx]
        self.host_factor = self.pine_share * alt[self.host_idx] * control[code]
        controlled = code > 0
        self.mortality = np.where(controlled, p.mortality_rate_controlled.value, p.mortality_rate_uncontrolled.value)
        self.sanitation = np.where(controlled, p.sanitation_removal_rate.value, 0.0)
        self.outbreak_years = int(p.outbreak_years.value)

        # ---- landscape grid ----------------------------------------------------------------
        size = p.cell_size_km.value
        xy = project_km(portfolio.latitude[self.host_idx], portfolio.longitude[self.host_idx],
                        p.grid_reference_latitude_deg.value)
        host_ij = np.floor(xy / size).astype(np.int64)
        land = p.landscape_data
        if land is None:  # the portfolio's own landscape: its host cells, dilated
            self.grid = build_grid(host_ij, size, p.grid_buffer_km.value, p.spread_radius_km.value)
            outside = np.ones(self.n_hosts, dtype=bool)
        else:  # the region's landscape, extended (dilated) around hosts that lie beyond it
            outside = ~_rows_in(host_ij, land.ij)
            if outside.any():
                self.grid = build_grid(host_ij[outside], size, p.grid_buffer_km.value, p.spread_radius_km.value,
                                       fixed_ij=land.ij)
            else:
                self.grid = shared_landscape_grid(land, p.landscape.sha256, size, p.grid_buffer_km.value,
                                                  p.spread_radius_km.value)
        self.host_cell = self._cell_index(host_ij)
        #: hosts outside the region's landscape (all of them without one): only their cells take
        #: infectivity and area labels from this portfolio
        self.hosts_outside_landscape = int(outside.sum()) if land is not None else 0
        self._host_outside = outside
        nc = self.grid.n_cells
        area = portfolio.area_ha[self.host_idx]
        wsum = np.bincount(self.host_cell[outside], weights=area[outside], minlength=nc)
        csum = np.bincount(self.host_cell[outside], weights=(area * control[code])[outside], minlength=nc)
        background = control[MANAGEMENT_LEVELS.index(p.background_pest_control)]
        infectivity = np.where(wsum > 0, csum / np.where(wsum > 0, wsum, 1.0), background).astype(np.float32)
        self._land_pos = self._cell_index(land.ij) if land is not None else np.empty(0, dtype=np.int64)
        if land is not None:
            infectivity[self._land_pos] = land.infectivity(control, background)
        self.infectivity = infectivity
        # neighbour matrix with the source cell's infectivity folded in: pressure = I @ W'
        self._w_local = (sparse.diags(self.infectivity) @ self.grid.neighbours).tocsr().astype(np.float32)
        self._w_local_t = self._w_local.T.tocsr()
        self._w_local_t.sort_indices()  # the compiled gather adds sources in ascending order
        self._cell_keys = np.ascontiguousarray(self.grid.keys, dtype=np.uint64)
        self._bits = _neighbour_bits(self._w_local, self._w_local_t)
        self._pressures = shared_pressure_table(self._w_local_t, self._bits[1]) if self._bits is not None else None
        # the tracked kernel's neighbour scatter indexes with these: numba wraps negative indices
        # of signed types, which unsigned ones skip (about 5-10 % of the cell year)
        self._sources_u32 = (self._w_local.indptr.astype(np.uint32), self._w_local.indices.astype(np.uint32))
        # the cells holding this portfolio's hosts, and each host's position among them
        self._host_cells, self._host_cell_local = np.unique(self.host_cell, return_inverse=True)
        self._host_cell_local = self._host_cell_local.astype(np.int64)

        # ---- areas (all parcels, for forced events and the initial epidemic) --------------------
        frame = portfolio.frame
        self._county = frame["county"].to_numpy(str)
        self._township = frame["township"].to_numpy(str)
        self._county_township = np.char.add(np.char.add(self._county, "/"), self._township)
        self._outside = outside
        self._land = land
        if land is not None:
            has_host = land.host_area_ha > 0
            self._land_labels = (land.county, land.township, np.char.add(np.char.add(land.county, "/"), land.township),
                                 has_host)
        init_mask = np.zeros(nc, dtype=bool)
        for name in p.initial_epidemic.counties:
            init_mask |= self._area_cells({"counties": [name]})
        self.initial_cells = init_mask
        #: with hosts beyond the landscape: the region's own process, which drives the landscape's cells
        #: of this (extended) grid every year, so the extension never feeds back into the region's epidemic
        self._region = (PineWilt.for_landscape(p, model) if land is not None and outside.any() else None)
        self._grid_token = self._landscape_token()
        #: the spread rates' draws per parameter set (:meth:`set_spread`); None: the file's rates on every path
        self.spread: SpreadDraws | None = None
        self._footprint_token = self._grid_token
        #: the tracked kernel's hazard grids by scale of the rates (:meth:`_grid_for`); the file's rates' first
        self._hazard_grids: dict[float, tuple[np.ndarray, np.ndarray]] = {1.0: self._threshold_grid()}
        self._shadow: dict[int, dict[str, Any]] = {}
        self._forced_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._base_probability = np.full(self.n_hosts, p.parcel_infection_probability.value)

    def set_spread(self, spread: SpreadDraws | None) -> None:
        """Draw the landscape's spread rates per parameter set (None: the file's rates on every path).

        Set by the simulator from its switches and the parameter file's ``peril_uncertainty``; the
        region's process that drives an extended grid takes the same draws. Footprints are cached
        under the landscape's token and :attr:`SpreadDraws.token` together.
        """
        if spread is not None and spread.local_log_sd == 0 and spread.jump_log_sd == 0:
            spread = None
        self.spread = spread
        self._shadow.clear()
        self._footprint_token = (self._grid_token if spread is None else
                                 hashlib.sha256(f"{self._grid_token}|spread {spread.token}".encode()).hexdigest())
        if self._region is not None:
            self._region.set_spread(spread)

    def path_rates(self, rnd: KeyedRandom) -> tuple[np.ndarray, np.ndarray]:
        """Each path's local transmission and long-distance jump rates, float32 (n_paths,): the
        file's rates times the parameter set's :class:`SpreadDraws` multipliers, if any."""
        p = self.params
        lr, jr = p.local_transmission_rate.value, p.long_distance_jump_rate.value
        if self.spread is None:
            n = rnd.n_paths
            return np.full(n, lr, dtype=np.float32), np.full(n, jr, dtype=np.float32)
        m_local, m_jump = self.spread.multipliers(rnd)
        return (lr * m_local).astype(np.float32), (jr * m_jump).astype(np.float32)

    def _grid_for(self, rates: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The tracked kernel's hazard grid, wide enough for these paths' rates (a hazard beyond
        the grid only costs its exact threshold): built once per power-of-two scale of the rates."""
        p = self.params
        lr, jr = rates
        top = max(float(lr.max(initial=0.0)) / max(p.local_transmission_rate.value, 1e-300),
                  float(jr.max(initial=0.0)) / max(p.long_distance_jump_rate.value, 1e-300), 1.0)
        scale = float(2.0 ** np.ceil(np.log2(top)))
        grid = self._hazard_grids.get(scale)
        if grid is None:
            grid = self._hazard_grids[scale] = self._threshold_grid(scale)
        return grid

    # ------------------------------------------------------------------------------------------
    def _cell_index(self, ij: np.ndarray) -> np.ndarray:
        """Grid positions of integer cell coordinates (all must be in the grid)."""
        code_g, code_q = _cell_codes(self.grid.ij, np.asarray(ij).reshape(-1, 2))
        order = np.argsort(code_g)
        pos = np.searchsorted(code_g[order], code_q)
        return order[pos].astype(np.int64)

    def _threshold_grid(self, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Bounding thresholds over every hazard a cell with infected neighbours can have with the
        rates up to ``scale`` times the file's (:func:`hazard_threshold_grid`), for the tracked
        kernel with tabulated pressures; empty arrays otherwise (the kernel then computes each
        threshold)."""
        empty = (np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint64))
        if self._pressures is None or self._pressures[0].size == 0:
            return empty
        p = self.params
        n = max(self.grid.n_cells, 1)
        hz_max = (scale * p.local_transmission_rate.value * float(self._pressures[1].max())
                  + scale * p.long_distance_jump_rate.value * float(self.infectivity.sum()) / n * (1 + 1e-6)
                  + p.introduction_rate_per_cell.value)
        if not np.isfinite(hz_max):
            return empty
        # thresholds are all but 2**53 beyond a hazard of 64 (p = 1 - e^-64): the grid stops there, and
        # the rare cell above it takes its exact threshold
        return hazard_threshold_grid(min(hz_max, 64.0))

    def notes(self) -> dict[str, Any]:
        """With a landscape, how many of the portfolio's host parcels lie beyond it: the grid is then
        extended around them, and their cells run an epidemic of this portfolio's own, driven by the
        region's (which they do not change)."""
        if self._land is None:
            return {}
        return {"pine_wilt_hosts_outside_landscape": self.hosts_outside_landscape}

    @property
    def n_hosts(self) -> int:
        return int(self.host_idx.size)

    def init_state(self, n_paths: int, rnd: KeyedRandom, years: int | None = None) -> PineWiltState:
        """The block's state. With the run's ``years`` the block reads the landscape's footprint
        (computed once and shared, :meth:`footprint`); without, it steps its cells year by year."""
        shared = years is not None and self.grid.n_cells > 0
        return PineWiltState(
            cell_infected=None if shared else self._initial_cells(rnd),
            cell_tracking=None if shared else self._new_tracking(n_paths),
            years_infected=np.full((n_paths, self.n_hosts), -1, dtype=np.int16),
            pine_left=np.ones((n_paths, self.n_hosts), dtype=np.float32),
            horizon=int(years) if shared else None,
        )

    def as_landscape(self) -> Landscape:
        """This portfolio's grid as a region's landscape (:mod:`models.perils.pine_wilt_landscape`):
        built from the region's registry of forest parcels, it is the landscape every portfolio of
        the region then runs on. A cell's labels are those of the township (``county/township``)
        holding most of its host area."""
        nc = self.grid.n_cells
        area = self.portfolio.area_ha[self.host_idx]
        full = majority_labels(self.host_cell, nc, area, self._county_township[self.host_idx])
        county, _, township = np.char.partition(full, "/").T
        code = np.asarray(self.portfolio.pest_control_code, dtype=np.intp)[self.host_idx]
        by_level = np.column_stack([np.bincount(self.host_cell, weights=np.where(code == k, area, 0.0), minlength=nc)
                                    for k in range(len(MANAGEMENT_LEVELS))])
        return Landscape(ij=self.grid.ij.copy(), county=np.asarray(county, dtype=str),
                         township=np.asarray(township, dtype=str), host_area_by_level=by_level)

    def landscape_with_pest_control(self, selected: np.ndarray, level: str) -> tuple[Landscape, float]:
        """The region's landscape after this portfolio's ``selected`` parcels take pest control ``level``.

        In each landscape cell, the selected host parcels' area moves from the pest-control level it
        had to ``level`` (at most the area the landscape holds at that level: the registry, not the
        portfolio, says what a cell holds). When the portfolio is the region's registry, as in the
        bureau's city-wide stress test, the result is the landscape the changed registry would give
        (:meth:`as_landscape`); a smaller portfolio changes its own cells' share. Hosts outside the
        landscape already set their cells' infectivity from the portfolio.

        Parameters
        ----------
        selected : ndarray of bool, shape (n_parcels,)
            The parcels the action treats.
        level : {"none", "basic", "enhanced"}

        Returns
        -------
        (Landscape, float)
            The changed landscape and the host area it moved (ha).
        """
        land = self.params.landscape_data
        if land is None:
            raise ValueError("pine_wilt has no landscape: the portfolio's own pest control sets its grid")
        new = MANAGEMENT_LEVELS.index(level)
        row_of = np.full(self.grid.n_cells, -1, dtype=np.int64)
        row_of[self._land_pos] = np.arange(land.n_cells)
        row = row_of[self.host_cell]
        ok = np.asarray(selected, dtype=bool)[self.host_idx] & ~self._host_outside & (row >= 0)
        code = np.asarray(self.portfolio.pest_control_code, dtype=np.intp)[self.host_idx]
        wanted = np.zeros_like(land.host_area_by_level)
        np.add.at(wanted, (row[ok], code[ok]), self.portfolio.area_ha[self.host_idx][ok])
        moved = np.minimum(land.host_area_by_level, wanted)
        moved[:, new] = 0.0
        by_level = land.host_area_by_level - moved
        by_level[:, new] += moved.sum(axis=1)
        return (Landscape(ij=land.ij, county=land.county, township=land.township, host_area_by_level=by_level),
                float(moved.sum()))

    # ---- the landscape footprint: the epidemic's cells, computed once per paths and seed ----------
    def _landscape_token(self) -> str:
        """Identity of everything the cell process depends on besides the seed and the paths."""
        p = self.params
        h = hashlib.sha256()
        for a in (self.grid.ij, self.infectivity, self.initial_cells, self.grid.neighbours.indptr,
                  self.grid.neighbours.indices):
            h.update(np.ascontiguousarray(a).tobytes())
            h.update(b"|")
        h.update(repr((p.local_transmission_rate.value, p.long_distance_jump_rate.value,
                       p.introduction_rate_per_cell.value, p.initial_epidemic.cell_infection_probability.value,
                       self._bits is not None)).encode())
        if self._region is not None:  # the landscape's cells follow the region's process
            h.update(b"driven by " + self._region._grid_token.encode())
        return h.hexdigest()

    def compute_footprint(self, rnd: KeyedRandom, years: int) -> np.ndarray:
        """The year each cell of each path is infected, without forced outbreaks.

        Returns
        -------
        ndarray of int16, shape (n_paths, n_cells)
            -1 for a cell infected at the start, ``y`` for one infected by year ``y``'s spread
            (0-based), :data:`NEVER` for one still susceptible after ``years`` years. The flags
            the year-by-year process has after year ``y`` are ``footprint <= y``, bit for bit.
        """
        flags = self._initial_cells(rnd)
        rates = self.path_rates(rnd)
        region = self._region.footprint(rnd, years) if self._region is not None else None
        if region is not None:
            flags[:, self._land_pos] = region < 0
        out = np.full(flags.shape, NEVER, dtype=np.int16)
        out[flags] = -1
        tracking = self._new_tracking(rnd.n_paths)
        # the tracked kernel records its own infections; flags set from outside (the region's) are
        # recorded after it and must be picked up by its next year
        direct = tracking is not None and region is None
        for y in range(int(years)):
            self.advance_cells(flags, y, rnd, None, tracking=tracking, year_of=out if direct else None,
                               sync=not direct or y == 0, rates=rates)
            if region is not None:  # the region's cells as the region's epidemic has them
                flags[:, self._land_pos] = region <= y
            if not direct:
                record_infection_year(flags, out, y)
        return out

    def _region_flags(self, rnd: KeyedRandom, year: int) -> np.ndarray:
        """The landscape's cells as the region's epidemic has them after ``year``, for a block
        stepping year by year (read from the region's footprint, computed for 30 years or more; the
        initial flags are the region's already: the same cells, labels and draws)."""
        return self._region.footprint(rnd, max(year + 1, 30)) <= year

    def footprint(self, rnd: KeyedRandom, years: int, cells: np.ndarray | None = None) -> np.ndarray:
        """:meth:`compute_footprint` of the cells ``cells`` (all when None), from the shared cache.

        Read from a block computed for a longer horizon, a cell infected after ``years`` shows that
        later year instead of :data:`NEVER`: either way it is not infected within the horizon.

        The cell process is a function of the landscape, the seed and the path alone (and of the
        spread draws' log-sds and parameter set size, :attr:`spread`), so a footprint is kept per
        32-path block (keyed by :meth:`_landscape_token` with the spread draws', the seed and the
        block) in a process-wide LRU cache of :data:`FOOTPRINT_CACHE_BYTES`: every portfolio
        on the same landscape -- loan after loan in a service, a stress scenario and its baseline --
        reads the same epidemic instead of simulating it again. Blocks the cache lacks are read from
        the store on disk (:mod:`models.perils.footprint_store`), which the next process reads too;
        blocks computed here are written to it. Paths that are not whole blocks (not a contiguous
        range from a multiple of 32) are computed and not kept.
        """
        ids = np.asarray(rnd.path_ids)
        n = ids.size
        whole = n > 0 and ids[0] % PATH_BLOCK == 0 and bool(np.all(np.diff(ids) == 1))
        if not whole:
            fp = self.compute_footprint(rnd, years)
            return fp if cells is None else np.ascontiguousarray(fp[:, cells])
        start = int(ids[0])
        keys = [(self._footprint_token, int(rnd.seed), b, min(PATH_BLOCK, start + n - b))
                for b in range(start, start + n, PATH_BLOCK)]
        with _FOOTPRINT_LOCK:
            got = [_FOOTPRINTS.get(k) for k in keys]
            if all(g is not None and g[0] >= years for g in got):
                for k in keys:
                    _FOOTPRINTS.move_to_end(k)
                parts = [g[1] if cells is None else g[1][:, cells] for g in got]
                return np.ascontiguousarray(np.concatenate(parts))
        # the next place: the store on disk, shared by this machine's processes
        stored = [g[1] if g is not None and g[0] >= years else
                  footprint_store.read_block(k[0], k[1], k[2], k[3], int(years), self.grid.n_cells)
                  for k, g in zip(keys, got)]
        if all(b is not None for b in stored):
            fp = np.concatenate(stored)
            self._keep_footprint(keys, start, years, fp)
            return fp if cells is None else np.ascontiguousarray(fp[:, cells])
        fp = self.compute_footprint(rnd, years)
        for k, b in zip(keys, stored):
            if b is None:
                footprint_store.write_block(k[0], k[1], k[2], int(years), fp[k[2] - start:k[2] - start + k[3]])
        self._keep_footprint(keys, start, years, fp)
        return fp if cells is None else np.ascontiguousarray(fp[:, cells])

    @staticmethod
    def _keep_footprint(keys: list[tuple], start: int, years: int, fp: np.ndarray) -> None:
        """Put a range's blocks in the process-wide cache (a longer horizon already there is kept)."""
        with _FOOTPRINT_LOCK:
            global _FOOTPRINT_BYTES
            for k in keys:
                old = _FOOTPRINTS.get(k)
                if old is not None and old[0] >= years:  # keep a longer horizon already there
                    _FOOTPRINTS.move_to_end(k)
                    continue
                block = fp[k[2] - start:k[2] - start + k[3]].copy()
                block.setflags(write=False)  # shared by every run that reads it
                if old is not None:
                    _FOOTPRINT_BYTES -= old[1].nbytes
                _FOOTPRINTS[k] = (int(years), block)
                _FOOTPRINTS.move_to_end(k)
                _FOOTPRINT_BYTES += block.nbytes
            while _FOOTPRINT_BYTES > FOOTPRINT_CACHE_BYTES and _FOOTPRINTS:
                _FOOTPRINT_BYTES -= _FOOTPRINTS.popitem(last=False)[1][1].nbytes

    def _initial_cells(self, rnd: KeyedRandom, prefix: str = "pine_wilt") -> np.ndarray:
        p0 = self.params.initial_epidemic.cell_infection_probability.value
        if not self.initial_cells.any() or p0 <= 0:
            return np.zeros((rnd.n_paths, self.grid.n_cells), dtype=bool)
        # draws only for the cells that can start infected: the same numbers as the dense
        # ``initial_cells & (keyed_uniform(keys) < p0)``
        cells = np.flatnonzero(self.initial_cells)
        u = rnd.keyed_uniform(f"{prefix}.initial", 0, self.grid.keys[cells])
        infected = np.zeros((rnd.n_paths, self.grid.n_cells), dtype=bool)
        infected[:, cells] = u < p0
        return infected

    # ---- landscape dynamics --------------------------------------------------------------
    def cell_hazard(self, infected: np.ndarray, rates: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Yearly infection hazard of every cell, shape (n_paths, n_cells), from the infected flags.

        ``rates``: each path's float32 local and jump rates (:meth:`path_rates`); None: the file's,
        which only a peril without spread draws has on every path.
        """
        p = self.params
        x = infected.astype(np.float32)
        local = np.asarray(self._w_local_t @ x.T).T  # (n_paths, n_cells): sum_j c_j I_j w_ji
        # the infected cells' infectivity added in ascending cell order, float32, as the kernels add it
        # (a BLAS dot product adds in its own order and can differ in the last bit)
        emitted = np.cumsum(x * self.infectivity[None, :], axis=1, dtype=np.float32)[:, -1] if x.shape[1] else \
            np.zeros(x.shape[0], dtype=np.float32)
        if rates is None:
            if self.spread is not None:
                raise ValueError("this peril draws its spread rates per parameter set: pass path_rates(rnd)")
            n = infected.shape[0]
            rates = (np.full(n, p.local_transmission_rate.value, dtype=np.float32),
                     np.full(n, p.long_distance_jump_rate.value, dtype=np.float32))
        lr, jr = rates
        h = lr[:, None] * local
        h += (jr * emitted / max(self.grid.n_cells, 1))[:, None]
        h += p.introduction_rate_per_cell.value
        return h

    def _new_tracking(self, n_paths: int) -> CellTracking | None:
        if self._bits is None:
            return None
        return CellTracking.empty(n_paths, self.grid.n_cells, self._bits[1].dtype)

    def advance_cells(self, infected: np.ndarray, year: int, rnd: KeyedRandom, forced_cells: np.ndarray | None,
                      prefix: str = "pine_wilt", tracking: CellTracking | None = None,
                      year_of: np.ndarray | None = None, sync: bool = True,
                      rates: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """One year of the cell SI process, in place.

        ``tracking`` is the state the tracked kernel keeps between years for these flags (from
        :meth:`init_state`); without it the year is computed from the flags alone. ``year_of`` (the
        footprint being built) gets ``year`` at the cells this year infects, when the tracked kernel
        runs; ``sync=False`` promises the tracked kernel that ``infected`` changed only through it
        since its last year (see :func:`cell_year_tracked`). ``rates``: the paths' rates from
        :meth:`path_rates` (computed here when None).
        """
        if self.grid.n_cells == 0:
            return
        # compiled (the numpy definition is cell_hazard + keyed uniforms; tests/test_kernels.py and
        # tests/test_pine_wilt_kernels.py hold both kernels to it)
        w, wt = self._w_local, self._w_local_t
        p = self.params
        rows = rnd.stream_rows(f"{prefix}.spread", year)
        t = None
        if self._bits is not None:
            t = tracking if tracking is not None else self._new_tracking(infected.shape[0])
            if t.known.shape != infected.shape:
                raise ValueError(f"cell tracking of shape {t.known.shape} for flags of shape {infected.shape}")
        if rates is None:
            rates = self.path_rates(rnd)
        if any(np.shape(r) != (infected.shape[0],) for r in rates):
            raise ValueError(f"rates of shapes {[np.shape(r) for r in rates]} for flags of shape {infected.shape}")
        lr, jr = (np.ascontiguousarray(r, dtype=np.float32) for r in rates)
        ir = p.introduction_rate_per_cell.value
        if t is not None:
            bit_value, bit = self._bits
            cell_year_tracked(infected, t.known, t.mask, t.emitted_sum, t.n_infected, *self._sources_u32, bit_value,
                              wt.indptr, wt.data, bit, *self._pressures, self.infectivity, lr, jr, ir, rows,
                              self._cell_keys, *self._grid_for((lr, jr)),
                              _NO_YEARS if year_of is None else year_of, year, sync)
        else:
            cell_year(infected, w.indptr, w.indices, w.data, wt.indptr, wt.indices, wt.data, self.infectivity, lr, jr,
                      ir, rows, self._cell_keys)
        if forced_cells is not None:
            infected |= forced_cells[None, :]

    def _shadow_marginal(self, seed: int, year: int, forced_cells: np.ndarray | None) -> np.ndarray:
        """Marginal probability that each cell is infected in ``year`` (independent mode).

        The shadow epidemic is filled lazily and shared by every block of paths of the run; the lock
        keeps chunks running on threads (``scheduler="threads"``) from advancing it twice. Its paths
        draw their spread rates as any paths do (:attr:`spread`), so the marginal averages over them:
        independent mode drops the tie between a path's spread rates and its parcels' infections.
        """
        with _SHADOW_LOCK:
            sh = self._shadow.get(seed)
            if sh is None:
                n = self.params.independent_shadow_paths
                srnd = KeyedRandom(seed, np.arange(n, dtype=np.int64), np.empty(0, dtype=np.uint64))
                sh = {"rnd": srnd, "state": self._initial_cells(srnd, "pine_wilt.shadow"), "pi": [],
                      "tracking": self._new_tracking(n), "rates": self.path_rates(srnd)}
                self._shadow[seed] = sh
            while len(sh["pi"]) <= year:
                y = len(sh["pi"])
                self.advance_cells(sh["state"], y, sh["rnd"], forced_cells if y == year else None,
                                   "pine_wilt.shadow", sh["tracking"], rates=sh["rates"])
                sh["pi"].append(sh["state"].mean(axis=0))
            return sh["pi"][year]

    # ---- forced events ---------------------------------------------------------------------
    def forced_masks(self, events: list[dict]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Cells to infect and per-host forced infection probabilities of this year's forced events.

        Raises
        ------
        ForcedEventError
            Unknown keys, no area named, non-text names, or a probability outside [0, 1]. Names the
            portfolio does not hold hit nothing.
        """
        if not events:
            return None, None
        key = repr(events)  # the same events recur in every block of paths: match the names once
        hit = self._forced_cache.get(key)
        if hit is None:
            hit = self._forced_masks(events)
            for a in hit:
                a.setflags(write=False)
            if len(self._forced_cache) >= 64:
                self._forced_cache.clear()
            self._forced_cache[key] = hit
        return hit

    def _forced_masks(self, events: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(events, (list, tuple)):
            raise ForcedEventError("forced pine_wilt events must be a list of dicts")
        allowed = {"counties", "townships", "parcel_probability"}
        cells = np.zeros(self.grid.n_cells, dtype=bool)
        prob = np.zeros(self.n_hosts)
        for k, ev in enumerate(events):
            if not isinstance(ev, dict):
                raise ForcedEventError(f"forced pine_wilt event {k}: must be a dict, got {type(ev).__name__}")
            bad = sorted(set(ev) - allowed)
            if bad:
                raise ForcedEventError(f"forced pine_wilt event {k}: unknown key(s) {bad}; allowed: {sorted(allowed)}")
            if not ev.get("counties") and not ev.get("townships"):
                raise ForcedEventError(f"forced pine_wilt event {k}: name at least one of `counties`, `townships`")
            lo, hi, lo_open = FORCED_RANGES["parcel_probability"]
            pe = forced_number(ev, "parcel_probability", self.name,
                               self.params.forced_outbreak_parcel_probability.value, lo, hi, lo_open=lo_open)
            for key in ("counties", "townships"):
                names = ev.get(key) or []
                if isinstance(names, str) or not isinstance(names, (list, tuple)):
                    raise ForcedEventError(f"forced pine_wilt event {k}: `{key}` must be a list of names")
                for nm in names:
                    if not isinstance(nm, str) or not nm.strip():
                        raise ForcedEventError(f"forced pine_wilt event {k}: `{key}` holds a non-text or empty name "
                                               f"{nm!r}")
            # a name this portfolio (or landscape) does not hold hits nothing (a city-wide scenario may
            # run on part of the city), as for the weather perils
            area = self._named_parcels(ev)
            cells |= self._area_cells(ev, area)
            in_area = area[self.host_idx]
            prob = np.where(in_area, np.maximum(prob, float(pe)), prob)
        return cells, prob

    def _named_parcels(self, ev: dict) -> np.ndarray:
        """The portfolio's parcels in the counties and townships an event names (names checked)."""
        area = np.zeros(self.portfolio.n_parcels, dtype=bool)
        for key, labels, full in (("counties", self._county, None),
                                  ("townships", self._township, self._county_township)):
            for nm in ev.get(key) or []:
                area |= _match_names(labels, nm.strip(), full)
        return area

    def _area_cells(self, ev: dict, parcels: np.ndarray | None = None) -> np.ndarray:
        """Cells holding host parcels in the areas an event names: the region's landscape cells by
        their labels, and the cells of this portfolio's hosts beyond the landscape (all of them
        without one) by the parcels' own."""
        area = self._named_parcels(ev) if parcels is None else parcels
        cells = np.zeros(self.grid.n_cells, dtype=bool)
        in_area = area[self.host_idx] & self._outside
        cells[self.host_cell[in_area]] = True
        if self._land is not None:
            county, township, full, has_host = self._land_labels
            m = np.zeros(self._land.n_cells, dtype=bool)
            for nm in ev.get("counties") or []:
                m |= _match_names(county, nm.strip())
            for nm in ev.get("townships") or []:
                m |= _match_names(township, nm.strip(), full)
            cells[self._land_pos[m & has_host]] = True
        return cells

    # ---- one year --------------------------------------------------------------------------
    def _year_inputs(self, ctx: YearContext, state: PineWiltState) -> dict[str, Any]:
        """Advance the cells and gather what the parcel infections and mortality of the year need."""
        y = ctx.year
        n_paths = ctx.rnd.n_paths
        forced_cells, forced_prob = self.forced_masks(ctx.forced_events.get(self.name, []))
        base = self.params.parcel_infection_probability.value
        cells, host_cell = np.zeros((0, 0), dtype=bool), self.host_cell
        if ctx.independent:
            pi = self._shadow_marginal(int(ctx.rnd.seed), y, forced_cells)
            cell_p = pi[self.host_cell]
        elif state.cell_infected is None and forced_cells is None:
            # the shared footprint: the flags of the hosts' cells after this year's spread
            if state.host_cell_year is None or y >= state.horizon:
                state.horizon = max(state.horizon, y + 1)
                state.host_cell_year = self.footprint(ctx.rnd, state.horizon, self._host_cells)
            cells, host_cell = state.host_cell_year <= y, self._host_cell_local
            cell_p = None
        else:
            if state.cell_infected is None:
                # a forced outbreak makes this run's epidemic its own from this year on: it goes on
                # year by year from the footprint's flags at the start of the year
                state.cell_infected = self.footprint(ctx.rnd, max(state.horizon, y + 1)) < y
                state.cell_tracking = self._new_tracking(n_paths)
                state.host_cell_year = None
            if forced_cells is not None:
                state.own_epidemic = True
            if state.cell_rates is None:
                state.cell_rates = self.path_rates(ctx.rnd)
            self.advance_cells(state.cell_infected, y, ctx.rnd, forced_cells, tracking=state.cell_tracking,
                               rates=state.cell_rates)
            if self._region is not None and not state.own_epidemic:
                state.cell_infected[:, self._land_pos] = self._region_flags(ctx.rnd, y)
            cells = state.cell_infected
            cell_p = None
        return dict(
            cell_p=cell_p, forced_prob=forced_prob, base=base, cells=cells, host_cell=host_cell,
            hazard=np.broadcast_to(np.asarray(ctx.hazard(self.name), dtype=float), (n_paths,)),
            severity=np.broadcast_to(np.asarray(ctx.severity(self.name), dtype=float), (n_paths,)),
        )

    def step(self, ctx: YearContext, state: PineWiltState) -> PerilLosses:
        if self.n_hosts == 0:
            return PerilLosses.empty()
        a = self._year_inputs(ctx, state)
        cell_p, forced_prob = a["cell_p"], a["forced_prob"]
        spatial = cell_p is None
        if spatial:
            pre = self._base_probability
            possible = np.zeros(0, dtype=bool)
        else:
            pre = cell_p * a["base"]
            possible = cell_p > 0
        has_forced = forced_prob is not None
        fprob = np.ascontiguousarray(forced_prob, dtype=float) if has_forced else np.zeros(0)
        # one compiled pass over (path, host): infections, then mortality (reference_step is
        # its numpy definition)
        pp, gq, loss = parcel_year(
            state.years_infected, state.pine_left, a["cells"], spatial, possible, a["host_cell"], self.host_idx,
            ctx.stand.age_years, ctx.stand.weakened_until, ctx.stand.year,
            np.float32(ctx.stand.pest_weakened_multiplier), np.ascontiguousarray(a["hazard"]), pre,
            self.host_factor, fprob, has_forced, ctx.rnd.stream_rows("pine_wilt.parcel", ctx.year),
            np.ascontiguousarray(ctx.rnd.parcel_keys, dtype=np.uint64), self.mortality, self.sanitation,
            self.pine_share, np.ascontiguousarray(a["severity"]), self.outbreak_years)
        if pp.size == 0:
            return PerilLosses.empty()
        z = np.zeros(pp.size, dtype=np.int64)
        return PerilLosses(pp, gq, loss, z, np.zeros(z.size, dtype=bool))

    def stands_replaced(self, state: PineWiltState, path_pos: np.ndarray, parcel_pos: np.ndarray) -> None:
        """A replaced host stand (clear-felled, or destroyed by a stand-replacing loss, and replanted)
        ends its episode: its infected pines went with it, so no outbreak goes on killing the
        seedlings. The replant is the parcel's species again, a host like a stand never infected:
        susceptible (``years_infected`` -1, ``pine_left`` 1), and infected again only once its age is
        above 0, as any host (:meth:`step`). The cell flags (the landscape's epidemic) are untouched."""
        if self.n_hosts == 0 or len(path_pos) == 0:
            return
        q = self._host_of_parcel[np.asarray(parcel_pos, dtype=np.int64)]
        host = q >= 0
        if host.any():
            pp, qq = np.asarray(path_pos, dtype=np.int64)[host], q[host]
            state.years_infected[pp, qq] = -1
            state.pine_left[pp, qq] = np.float32(1.0)

    def reference_step(self, ctx: YearContext, state: PineWiltState) -> PerilLosses:
        """The plain-numpy definition of :meth:`step` (the tests hold the compiled pass to it)."""
        if self.n_hosts == 0:
            return PerilLosses.empty()
        a = self._year_inputs(ctx, state)
        cell_p, forced_prob, base = a["cell_p"], a["forced_prob"], a["base"]
        y = ctx.year
        years = state.years_infected
        susceptible = years < 0
        if cell_p is not None:
            cand = susceptible & (cell_p > 0)[None, :]
        else:
            cand = susceptible & a["cells"][:, a["host_cell"]]
        if forced_prob is not None:
            cand |= susceptible & (forced_prob > 0)[None, :]
        cand &= ctx.stand.age_years[:, self.host_idx] > 0
        pp, qq = np.nonzero(cand)
        if pp.size:
            gq = self.host_idx[qq]
            weak = ctx.stand.pest_multiplier_at(pp, gq).astype(float)
            factor = self.host_factor[qq] * weak * a["hazard"][pp]
            if cell_p is None:
                p = base * factor
            else:
                p = cell_p[qq] * base * factor
            if forced_prob is not None:
                p = np.maximum(p, forced_prob[qq] * factor)
            u = ctx.rnd.sparse_uniform("pine_wilt.parcel", y, pp, gq)
            new = u < np.minimum(p, 1.0)
            years[pp[new], qq[new]] = 0
            state.pine_left[pp[new], qq[new]] = 1.0

        # ---- mortality of infected stands ---------------------------------------------------------
        pp, qq = np.nonzero((years >= 0) & (years < self.outbreak_years))
        if pp.size == 0:
            return PerilLosses.empty()
        gq = self.host_idx[qq]
        m = self.mortality[qq] * ctx.stand.pest_multiplier_at(pp, gq).astype(float) * a["severity"][pp]
        m = np.minimum(m + self.sanitation[qq], 1.0)
        left = state.pine_left[pp, qq].astype(float)
        s0 = self.pine_share[qq]
        with np.errstate(invalid="ignore"):  # 0/0 for a pure-pine stand already dead: NaN, dropped below
            share = s0 * left / (s0 * left + (1.0 - s0))
        loss = share * m
        state.pine_left[pp, qq] = (left * (1.0 - m)).astype(np.float32)
        years[pp, qq] += 1
        keep = loss > 0
        z = np.zeros(int(keep.sum()), dtype=np.int64)
        return PerilLosses(pp[keep].astype(np.int64), gq[keep], loss[keep], z, np.zeros(z.size, dtype=bool))


Params = PineWiltParams

__all__ = ["CellGrid", "CellTracking", "LandscapeRef", "NEVER", "PineWilt", "PineWiltParams", "PineWiltState",
           "SpreadDraws", "build_grid", "shared_landscape_grid", "project_km", "warm_footprint", "with_pest_control"]
