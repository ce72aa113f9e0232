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

The **year loss table** (period loss table in Oasis terms, peers.md §1) has one row per simulated
year, zero years included::

    aggregate_loss[y]      = sum_{events e in y} L_e                 (annual aggregate, AEP basis)
    max_occurrence_loss[y] = max_{events e in y} L_e, 0 if none     (annual max event, OEP basis)
    n_events[y]            = number of events with L_e > 0

Everything is vectorised: ``np.bincount`` for sums and counts, ``np.maximum.at`` for maxima, one
``argsort`` to merge duplicate event rows (skipped when the table is already sorted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "InsuranceInputError",
    "EventLosses",
    "event_losses",
    "year_loss_table",
    "annual_aggregate",
    "annual_max_occurrence",
    "as_loss_array",
]


class InsuranceInputError(ValueError):
    """Bad input to the insurance maths (names the column or argument and the reason)."""


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
    """

    year: np.ndarray
    loss: np.ndarray
    n_years: int

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


def event_losses(elt: pd.DataFrame, n_years: int, *, year_col: str = "year",
                 event_col: str | Sequence[str] = "event_id", loss_col: str = "loss") -> EventLosses:
    """Validate an ELT and return one loss per distinct (year, event).

    Parameters
    ----------
    elt : DataFrame
        The event loss table (see the module docstring). May be empty.
    n_years : int
        Number of simulated years; every ``year`` must lie in ``[0, n_years)``.
    year_col, event_col, loss_col : str
        Column names (``event_col`` may be a sequence of columns forming the event id).

    Returns
    -------
    EventLosses

    Raises
    ------
    InsuranceInputError
        Naming the column or argument: missing column, non-numeric or NaN values, non-integer or
        out-of-range year, negative or infinite loss, bad ``n_years``.
    """
    n_years = check_n_years(n_years)
    if not isinstance(elt, pd.DataFrame):
        raise InsuranceInputError(f"elt must be a pandas DataFrame, got {type(elt).__name__}")
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
    if year.size <= 1:
        return EventLosses(year.copy(), loss.copy(), n_years)

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
        return EventLosses(np.ascontiguousarray(year), np.ascontiguousarray(loss), n_years)
    return EventLosses(year[starts], np.add.reduceat(loss, starts), n_years)


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
