"""Event and year loss tables: validation and the year loss table (YLT).

Conventions
-----------
An **event loss table** (ELT) is a DataFrame with one row per (simulation year, event):

``year``
    Simulation-year index, an integer in ``[0, n_years)``. ``n_years`` is the number of simulated
    years (for a Monte Carlo run of P paths of Y years each, use ``sim_year = path * Y + year`` and
    ``n_years = P * Y``). A year with no row had no loss.
``event_id``
    Identifier of the event within its year (any hashable values; several columns may be named,
    e.g. ``("peril", "event")``, when ids repeat across perils).
``loss``
    Loss of the event, >= 0, in any unit (CNY, tCO2e); every output is in the same unit.

Rows sharing the same (year, event id) are one event split over several rows (for example one
row per group of parcels); their losses are **summed** before any per-event term is applied.

**The engine's own table** (``SimulationResult.elt``, ``carbon-risk simulate --loss-table LEVEL``) has
``path``, ``year`` (the year *within* the path, 0..Y-1), ``sim_year`` (``path * Y + year``), ``mc_block``,
``mc_block_paths``, ``event_id``, ``peril``, ``group`` and ``loss_tco2e``. It is recognised by its ``path`` and ``sim_year`` columns:
unless told otherwise its simulated year is ``sim_year`` and its loss ``loss_tco2e`` (:func:`elt_columns`).

**Monte Carlo blocks.** The simulated years of such a table are not independent: a path's years share its
stands (a fire leaves less to burn next year), and the paths of a parameter set share a draw of the uncertain
parameters (``mc_block`` = ``path // b``, ``b`` = ``mc_block_paths``, the run's ``SimulationSwitches.mc_block_size``:
the parameter set, else an antithetic pair, else 1). :func:`event_losses` therefore records ``years_per_block``
(``Y x b``, read from the table by :func:`mc_block_years`; ``Y`` alone for a table with ``path`` but neither block
column; 1 for any other table, whose years are taken as independent), and the layer's errors are those of the
blocks (:func:`block_mean_se`; the last block is short when the paths are no whole number of blocks, as a run's
last parameter set is).

**A year column that cannot index n_years simulated years** is refused (:class:`YearIndexError`, naming
the column and why; :func:`check_year_index`): with a ``path`` column, a year index that appears in two
paths is a year within a path (each path's years are simulated years of their own); for the engine's table,
an ``n_years`` that is no whole number of its paths; and, for a table a user brings (``check_year_spread``,
as ``carbon-risk price-layer`` and ``POST /v1/layer-pricing`` ask), whatever the columns, a table whose ``k`` distinct event years all lie in ``[0, M]`` with ``M + 1 <= n_years / 2`` and
``((M + 1) / n_years) ** k < 1e-9`` -- under exchangeable simulated years the chance of that is below
one in a billion, so ``n_years`` is not the number of years the table covers. A sparse catalogue (a few
event years spread over ``[0, n_years)``) passes: with ``k`` events in uniformly spread years the check
refuses less than once in a billion tables.

The **year loss table** (period loss table in Oasis terms, peers.md §1) has one row per simulated
year, zero years included::

    aggregate_loss[y]      = sum_{events e in y} L_e                 (annual aggregate, AEP basis)
    max_occurrence_loss[y] = max_{events e in y} L_e, 0 if none     (annual max event, OEP basis)
    n_events[y]            = number of events with L_e > 0

Everything is vectorised: ``np.bincount`` for sums and counts, ``np.maximum.at`` for maxima, one
``argsort`` to merge duplicate event rows (skipped when the table is already sorted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "InsuranceInputError",
    "YearIndexError",
    "EventLosses",
    "ENGINE_ELT_COLUMNS",
    "check_year_index",
    "mc_block_years",
    "block_mean_se",
    "elt_columns",
    "event_losses",
    "year_loss_table",
    "annual_aggregate",
    "annual_max_occurrence",
    "as_loss_array",
]


class InsuranceInputError(ValueError):
    """Bad input to the insurance maths (names the column or argument and the reason)."""


class YearIndexError(InsuranceInputError):
    """An ELT's year column cannot index ``n_years`` simulated years (:func:`check_year_index`).

    ``column`` is the year column at fault; ``suggestion`` the table's simulated-year column when it has
    one (the engine's ``sim_year``), else None."""

    def __init__(self, message: str, column: str, suggestion: str | None = None):
        super().__init__(message)
        self.column = column
        self.suggestion = suggestion

    def __reduce__(self):  # picklable with its fields (it crosses from a compute worker)
        return (type(self), (str(self), self.column, self.suggestion))


#: the columns that mark the engine's own event loss table (``path``, and ``sim_year = path * years + year``)
ENGINE_ELT_COLUMNS = ("path", "sim_year")
#: below this chance (under exchangeable simulated years) a table's event years all lying early is refused
YEAR_INDEX_P_MIN = 1e-9


def elt_columns(elt: pd.DataFrame, year_col: str | None = None, loss_col: str | None = None
                ) -> tuple[str, str, bool]:
    """(year column, loss column, whether ``elt`` is the engine's own table) with the defaults filled in.

    The engine's table (columns ``path`` and ``sim_year``: module docstring) defaults to ``sim_year`` and,
    when it has no ``loss`` column, ``loss_tco2e``; any other table to ``year`` and ``loss``. A column named
    by the caller is kept as it is (:func:`check_year_index` still refuses one that cannot index the years)."""
    cols = set(elt.columns) if isinstance(elt, pd.DataFrame) else set()
    engine = set(ENGINE_ELT_COLUMNS) <= cols
    y = year_col if year_col is not None else ("sim_year" if engine else "year")
    if loss_col is not None:
        lc = loss_col
    else:
        lc = "loss_tco2e" if engine and "loss" not in cols and "loss_tco2e" in cols else "loss"
    return y, lc, engine


def _range_text(lo: int, hi: int) -> str:
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _chance_text(log_p: float) -> str:
    """A tiny probability ``exp(log_p)`` as text (``1e-34``; ``1e-1234`` past the floats' range)."""
    p = math.exp(log_p)
    return f"{p:.1g}" if p > 0 else f"1e{log_p / math.log(10):.0f}"


def check_year_index(elt: pd.DataFrame, year: np.ndarray, n_years: int, year_col: str, *,
                     spread: bool = False) -> int | None:
    """Refuse a year column that cannot index ``n_years`` simulated years (module docstring); return the
    engine's table's years per path (``sim_year = path x Y + year``: ``Y``), or None for any other table.

    ``year`` is the column's values as validated integers in ``[0, n_years)``. Always: a year index shared by
    two paths of a ``path`` column, and for the engine's table an ``n_years`` that is no whole number of its
    paths. With ``spread`` (a table a user brings: ``price_layer(..., check_year_spread=True)``, as the CLI and
    the API ask) also event years that all lie far below ``n_years`` (module docstring; off for the library's
    own hand-built tables). Raises :class:`YearIndexError` naming the column, what it holds and, for a table
    with one, the simulated-year column to use."""
    if year.size == 0:
        return None
    years_per_path = None
    cols = set(elt.columns)
    sim = "sim_year" if "sim_year" in cols and year_col != "sim_year" else None
    if "path" in cols and year_col != "path":
        path_codes, paths = pd.factorize(elt["path"], sort=False)
        keys = np.unique(year * max(len(paths), 1) + path_codes.astype(np.int64))  # distinct (year, path) pairs
        if keys.size > np.unique(year).size:  # some year index appears in two paths or more
            use = (f"use the table's simulated-year column {sim!r} (path x years per path + year)" if sim else
                   "number the simulated years path x years per path + year")
            raise YearIndexError(
                f"column {year_col!r} holds the year within each path ({_range_text(int(year.min()), int(year.max()))}"
                f", repeated in {len(paths):,} paths of column 'path'), so it cannot index n_years={n_years:,} "
                f"simulated years: each path's years are simulated years of their own; {use}", year_col, sim)
    if year_col == "sim_year" and {"path", "year"} <= cols and year.size:
        # the engine's table: sim_year = path * Y + year, so n_years must be a whole number of paths of Y years
        p = pd.to_numeric(elt["path"], errors="coerce").to_numpy(dtype=np.float64)
        w = pd.to_numeric(elt["year"], errors="coerce").to_numpy(dtype=np.float64)
        on = p > 0
        if on.any():
            y_per = (year[on] - w[on]) / p[on]
            if np.all(y_per == y_per[0]) and y_per[0] == int(y_per[0]) and y_per[0] >= 1:
                yp = int(y_per[0])
                n_paths = int(np.nanmax(p)) + 1
                if n_years % yp:
                    raise YearIndexError(
                        f"n_years={n_years:,} is not a whole number of the table's paths of {yp} years (its column "
                        f"'sim_year' is path x {yp} + year): its {n_paths:,} paths (0-{n_paths - 1}) cover "
                        f"{n_paths * yp:,} simulated years", year_col)
                years_per_path = yp
        elif np.all(p == 0) and np.array_equal(w, year.astype(np.float64)):
            years_per_path = n_years  # every event on path 0: one path of n_years years, as far as it shows
    if not spread:
        return years_per_path
    k = np.unique(year).size
    top = int(year.max()) + 1
    if 2 * top <= n_years and k * math.log(top / n_years) < math.log(YEAR_INDEX_P_MIN):
        hint = (f"; with a path column, the simulated year is {sim!r}" if sim else "")
        raise YearIndexError(
            f"column {year_col!r}: the table's {k:,} event years all lie in 0-{top - 1}, but n_years={n_years:,}: "
            f"were the years of the table {n_years:,} exchangeable simulated years, that would happen with a chance "
            f"of {_chance_text(k * math.log(top / n_years))}; n_years must be the number of simulated years the "
            f"table covers (is it {top:,}? is the column each path's own year?){hint}", year_col, sim)
    return years_per_path


def mc_block_years(elt: pd.DataFrame, years_per_path: int | None, n_years: int) -> int:
    """Simulated years per Monte Carlo block of an event loss table (module docstring, *Monte Carlo blocks*).

    ``years_per_path`` is :func:`check_year_index`'s ``Y`` (None: not the engine's table, 1 returned). The block
    size ``b`` (paths) is the table's ``mc_block_paths`` (one whole number >= 1 on every row, and ``mc_block ==
    path // b`` where the table has ``mc_block``). A table with ``mc_block`` alone (written before
    ``mc_block_paths``) takes the largest ``b`` with ``mc_block == path // b`` on every row that leaves two blocks
    or more (coarser blocks are still independent of each other when they are whole runs of the true ones; the
    rows of a sparse table may leave that open). A table whose block columns contradict themselves is refused
    (:class:`InsuranceInputError` naming the column). Returns ``Y x b``; ``Y`` (whole paths) without either
    column."""
    if years_per_path is None:
        return 1
    cols = set(elt.columns)
    if not cols & {"mc_block", "mc_block_paths"} or n_years % years_per_path:
        return years_per_path
    n_paths = n_years // years_per_path
    path = _numeric_column(elt, "path").astype(np.int64, copy=False)
    block = None
    if "mc_block" in cols:
        block = _whole_column(elt, "mc_block")
        if (block < 0).any() or (block > path).any():
            raise InsuranceInputError("column 'mc_block' must lie in 0..path (the engine's path // mc_block_paths); "
                                      f"{int(((block < 0) | (block > path)).sum())} row(s) do not")
    if "mc_block_paths" in cols:
        sizes = np.unique(_whole_column(elt, "mc_block_paths"))
        if sizes.size != 1 or sizes[0] < 1:
            raise InsuranceInputError(f"column 'mc_block_paths' must hold one whole number >= 1 on every row (the "
                                      f"run's paths per Monte Carlo block), got {sizes[:5].tolist()}")
        b = int(sizes[0])
        if block is not None and not np.array_equal(block, path // b):
            raise InsuranceInputError(f"column 'mc_block' is not path // mc_block_paths ({b}) on every row")
        return years_per_path * min(b, max(n_paths, 1))
    # block == path // b  <=>  block * b <= path < (block + 1) * b  <=>  path // (block + 1) < b <= path / block
    lo = int((path // (block + 1)).max()) + 1 if path.size else 1
    pos = block > 0
    hi = int((path[pos] // block[pos]).min()) if pos.any() else n_paths
    if lo > hi:
        raise InsuranceInputError(
            "column 'mc_block' is not path // b for any block size b (the engine writes the paths sharing a "
            "parameter draw or an antithetic pair as consecutive blocks); drop the column to take whole paths "
            "as the independent units")
    b = min(hi, max(n_paths // 2, 1))  # at least two blocks: one block has no spread to estimate an error from
    return years_per_path * b if b >= lo else years_per_path


def _whole_column(elt: pd.DataFrame, col: str) -> np.ndarray:
    x = _numeric_column(elt, col)
    if x.dtype.kind == "f" and not np.all(np.floor(x) == x):
        raise InsuranceInputError(f"column {col!r} must hold whole numbers")
    return x.astype(np.int64, copy=False)


def block_mean_se(values: np.ndarray, years_per_block: int = 1) -> float:
    """Standard error of the mean of per-simulated-year ``values`` whose consecutive runs of ``years_per_block``
    years are independent blocks (module docstring), the last one short when ``n`` is no whole number of them: the
    ratio estimator's ``sqrt(sum_k (S_k - xbar n_k)^2 / (G (G - 1) nbar^2))`` over the ``G`` blocks' sums ``S_k``
    and sizes ``n_k`` (``nbar = n / G``; Cochran 1977, *Sampling Techniques*, §6.8 and §9.5), which for equal blocks
    is the sd of the block means over ``sqrt(G)`` (Student's t on ``G - 1`` degrees of freedom for an interval).
    With one block, or blocks of one year, the years are taken as independent (``sd / sqrt(n)``); NaN for fewer
    than two years."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    n = x.size
    if n < 2:
        return math.nan
    b = max(int(years_per_block), 1)
    g = -(-n // b)  # blocks, the last one short when b does not divide n
    if b == 1 or g < 2:
        return float(x.std(ddof=1) / math.sqrt(n))
    if n % b == 0:
        return float(x.reshape(g, b).mean(axis=1).std(ddof=1) / math.sqrt(g))
    sums = np.add.reduceat(x, np.arange(0, n, b))
    sizes = np.diff(np.r_[np.arange(0, n, b), n]).astype(np.float64)
    xbar = x.mean()
    return float(math.sqrt(((sums - xbar * sizes) ** 2).sum() / (g * (g - 1) * (n / g) ** 2)))


@dataclass(frozen=True)
class EventLosses:
    """Validated events of an ELT, one entry per distinct (year, event).

    Attributes
    ----------
    year : ndarray of int64, shape (n_events,)
        Simulation-year index of each event, in ``[0, n_years)``.
    loss : ndarray of float64, shape (n_events,)
        Loss of each event (>= 0), summed over rows of the same event.
    n_years : int
        Number of simulated years (the denominator of every annual average).
    years_per_block : int
        Consecutive simulated years that form one independent Monte Carlo block (module docstring): the
        engine's table's paths of a parameter set (or pair, or one path); 1 for independent years.
    """

    year: np.ndarray
    loss: np.ndarray
    n_years: int
    years_per_block: int = 1

    @property
    def n_events(self) -> int:
        return int(self.loss.size)


def check_n_years(n_years) -> int:
    """Validate the number of simulated years (a positive integer)."""
    if isinstance(n_years, bool) or not isinstance(n_years, (int, np.integer)):
        raise InsuranceInputError(f"n_years must be a positive integer, got {n_years!r}")
    if n_years < 1:
        raise InsuranceInputError(f"n_years must be >= 1, got {n_years}")
    return int(n_years)


def _numeric_column(df: pd.DataFrame, col: str) -> np.ndarray:
    s = df[col]
    if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
        raise InsuranceInputError(f"column {col!r} must be numeric, got dtype {s.dtype}")
    arr = s.to_numpy()
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise InsuranceInputError(f"column {col!r} has {int(np.isnan(arr).sum())} missing (NaN) value(s)")
    return arr


def _event_codes(df: pd.DataFrame, cols: Sequence[str]) -> np.ndarray:
    """Integer codes (int64, >= 0) identifying the event within the table, from one or more columns."""
    code = np.zeros(len(df), dtype=np.int64)
    for col in cols:
        s = df[col]
        if s.isna().any():
            raise InsuranceInputError(f"column {col!r} has missing event ids")
        if pd.api.types.is_integer_dtype(s) and not pd.api.types.is_bool_dtype(s):
            c = s.to_numpy().astype(np.int64, copy=False)
            lo = int(c.min()) if c.size else 0
            c = c - lo
            card = int(c.max()) + 1 if c.size else 1
            if card > 4 * c.size + 16:   # sparse ids (e.g. the engine's path/year/peril-coded ids): renumber
                c, uniques = pd.factorize(c, sort=True)
                c = c.astype(np.int64, copy=False)
                card = max(len(uniques), 1)
        else:
            c, uniques = pd.factorize(s, sort=False)
            c = c.astype(np.int64, copy=False)
            card = max(len(uniques), 1)
        if code.size and int(code.max()) + 1 > np.iinfo(np.int64).max // card:
            raise InsuranceInputError(f"event id columns {list(cols)} have too many distinct values to combine")
        code = code * card + c
    return code


def event_losses(elt: pd.DataFrame, n_years: int, *, year_col: str | None = None,
                 event_col: str | Sequence[str] = "event_id", loss_col: str | None = None,
                 check_year_spread: bool = False) -> EventLosses:
    """Validate an ELT and return one loss per distinct (year, event).

    Parameters
    ----------
    elt : DataFrame
        The event loss table (see the module docstring). May be empty.
    n_years : int
        Number of simulated years; every ``year`` must lie in ``[0, n_years)``.
    year_col, event_col, loss_col : str
        Column names (``event_col`` may be a sequence of columns forming the event id); ``year_col`` and
        ``loss_col`` None: ``year`` and ``loss``, or for the engine's own table ``sim_year`` and
        ``loss_tco2e`` (:func:`elt_columns`).
    check_year_spread : bool
        Also refuse event years that all lie far below ``n_years`` (:func:`check_year_index`).

    Returns
    -------
    EventLosses

    Raises
    ------
    InsuranceInputError
        Naming the column or argument: missing column, non-numeric or NaN values, non-integer or
        out-of-range year, negative or infinite loss, bad ``n_years``; :class:`YearIndexError` for a year
        column that cannot index ``n_years`` simulated years (:func:`check_year_index`).
    """
    n_years = check_n_years(n_years)
    if not isinstance(elt, pd.DataFrame):
        raise InsuranceInputError(f"elt must be a pandas DataFrame, got {type(elt).__name__}")
    year_col, loss_col, _ = elt_columns(elt, year_col, loss_col)
    ev_cols = [event_col] if isinstance(event_col, str) else list(event_col)
    missing = [c for c in [year_col, *ev_cols, loss_col] if c not in elt.columns]
    if missing:
        raise InsuranceInputError(f"elt is missing required column(s) {missing}; it has {list(elt.columns)}")
    year = _numeric_column(elt, year_col)
    loss = _numeric_column(elt, loss_col).astype(np.float64, copy=False)
    if year.dtype.kind == "f":
        if not np.all(np.floor(year) == year):
            raise InsuranceInputError(f"column {year_col!r} must hold integer year indices")
    year = year.astype(np.int64, copy=False)
    if year.size:
        bad = (year < 0) | (year >= n_years)
        if bad.any():
            raise InsuranceInputError(
                f"column {year_col!r} must lie in [0, n_years={n_years}); {int(bad.sum())} row(s) outside, "
                f"e.g. {int(year[bad][0])}")
        if (loss < 0).any():
            raise InsuranceInputError(f"column {loss_col!r} must be >= 0; {int((loss < 0).sum())} negative value(s)")
        if not np.isfinite(loss).all():
            raise InsuranceInputError(f"column {loss_col!r} must be finite")
        yp = check_year_index(elt, year, n_years, year_col, spread=check_year_spread)
        block = mc_block_years(elt, yp, n_years)
    else:
        block = 1
    if year.size <= 1:
        return EventLosses(year.copy(), loss.copy(), n_years, block)

    ev = _event_codes(elt, ev_cols)
    card = int(ev.max()) + 1
    if n_years > np.iinfo(np.int64).max // card:
        raise InsuranceInputError("n_years x number of event ids overflows the combined event key")
    key = year * card + ev
    if not np.all(key[1:] >= key[:-1]):
        order = np.argsort(key)
        key, year, loss = key[order], year[order], loss[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    if starts.size == key.size:        # no duplicates: one row per event already
        return EventLosses(np.ascontiguousarray(year), np.ascontiguousarray(loss), n_years, block)
    return EventLosses(year[starts], np.add.reduceat(loss, starts), n_years, block)


def annual_aggregate(events: EventLosses, values: np.ndarray | None = None) -> np.ndarray:
    """Annual sum of ``values`` (default: the event losses) per simulated year, shape (n_years,)."""
    v = events.loss if values is None else values
    return np.bincount(events.year, weights=v, minlength=events.n_years).astype(np.float64, copy=False)


def annual_max_occurrence(events: EventLosses, values: np.ndarray | None = None) -> np.ndarray:
    """Annual maximum of ``values`` (default: the event losses) per year, 0 for years without events."""
    v = events.loss if values is None else values
    out = np.zeros(events.n_years, dtype=np.float64)
    np.maximum.at(out, events.year, v)
    return out


def year_loss_table(elt: pd.DataFrame, n_years: int, **columns) -> pd.DataFrame:
    """Year loss table of an ELT, one row per simulated year including years without loss.

    Parameters
    ----------
    elt : DataFrame
        Event loss table (columns ``year``, ``event_id``, ``loss`` unless renamed with
        ``year_col=``, ``event_col=``, ``loss_col=``).
    n_years : int
        Number of simulated years.

    Returns
    -------
    DataFrame
        Columns ``year`` (0..n_years-1), ``aggregate_loss`` (annual sum), ``max_occurrence_loss``
        (largest single event, 0 if none), ``n_events`` (events with a positive loss), in the loss
        unit of the ELT.
    """
    ev = event_losses(elt, n_years, **columns)
    return pd.DataFrame({
        "year": np.arange(ev.n_years, dtype=np.int64),
        "aggregate_loss": annual_aggregate(ev),
        "max_occurrence_loss": annual_max_occurrence(ev),
        "n_events": np.bincount(ev.year[ev.loss > 0], minlength=ev.n_years).astype(np.int64),
    })


def as_loss_array(losses, name: str = "losses", *, allow_negative: bool = False) -> np.ndarray:
    """Validate a 1-d sample of annual losses (one value per simulated year) as float64.

    Raises :class:`InsuranceInputError` naming ``name`` when it is empty, not 1-d, not finite,
    or (unless ``allow_negative``) has negative values.
    """
    if isinstance(losses, (pd.Series, pd.Index)):
        losses = losses.to_numpy()
    try:
        arr = np.asarray(losses, dtype=np.float64)
    except (TypeError, ValueError):
        raise InsuranceInputError(f"{name} must be numeric") from None
    if arr.ndim != 1:
        raise InsuranceInputError(f"{name} must be a 1-d array of annual losses, got shape {arr.shape}")
    if arr.size == 0:
        raise InsuranceInputError(f"{name} is empty")
    if not np.isfinite(arr).all():
        raise InsuranceInputError(f"{name} must be finite (no NaN or inf)")
    if not allow_negative and (arr < 0).any():
        raise InsuranceInputError(f"{name} must be >= 0; {int((arr < 0).sum())} negative value(s)")
    return arr
