"""Shared pieces of the weather perils (fire, drought, typhoon, ice storm).

Not a peril itself (the leading underscore keeps the registry from importing it as one): a sourced
range model for the parameter file, per-path multipliers, forced-event validation and county codes.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from models.parameters.schema import Confidence, Sourced
from models.perils._screen_kernels import group_sums, pair_order


class SourcedRange(BaseModel):
    """A uniform range ``[low, high]`` with its source and confidence label."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float
    high: float
    source: str
    confidence: Confidence
    note: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "SourcedRange":
        if not (np.isfinite(self.low) and np.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"range needs finite low <= high, got [{self.low}, {self.high}]")
        return self

    @property
    def mean(self) -> float:
        return 0.5 * (self.low + self.high)

    def draw(self, u: np.ndarray) -> np.ndarray:
        """Map uniforms on (0, 1) onto the range."""
        return self.low + (self.high - self.low) * u


def check_range(r: SourcedRange, name: str, lo: float, hi: float) -> None:
    if not (lo <= r.low and r.high <= hi):
        raise ValueError(f"{name} must lie within [{lo}, {hi}], got [{r.low}, {r.high}]")


def check_value(v: Sourced, name: str, lo: float, hi: float, *, lo_open: bool = False) -> None:
    ok = (lo < v.value if lo_open else lo <= v.value) and v.value <= hi
    if not ok:
        raise ValueError(f"{name} must lie in {'(' if lo_open else '['}{lo}, {hi}], got {v.value}")


def per_path(x: Any, n_paths: int) -> np.ndarray:
    """A scenario multiplier (scalar or (n_paths,) array) as a float array of shape (n_paths,)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        return np.full(n_paths, float(a))
    if a.shape != (n_paths,):
        raise ValueError(f"a per-path multiplier must be a scalar or have shape ({n_paths},), got {a.shape}")
    return a


class ForcedEventError(ValueError):
    """A scenario-imposed (forced) event is malformed; the message names the peril and key."""


def forced_events(ctx: Any, peril: str, allowed: dict[str, str], required: Iterable[str] = ()) -> list[dict]:
    """The forced events of ``peril`` this year, with their keys checked.

    ``allowed`` maps each accepted key to a short description (used in the error message).
    """
    events = ctx.forced_events.get(peril, []) if ctx.forced_events else []
    if isinstance(events, dict):
        raise ForcedEventError(f"forced_events[{peril!r}] must be a list of dicts, got one dict")
    out = []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            raise ForcedEventError(f"forced_events[{peril!r}][{i}] must be a dict, got {type(ev).__name__}")
        unknown = [k for k in ev if k not in allowed]
        if unknown:
            raise ForcedEventError(
                f"forced_events[{peril!r}][{i}]: unknown key(s) {unknown}; accepted: "
                + ", ".join(f"{k} ({d})" for k, d in allowed.items()))
        for k in required:
            if k not in ev:
                raise ForcedEventError(f"forced_events[{peril!r}][{i}]: key {k!r} is required ({allowed[k]})")
        out.append(ev)
    return out


def forced_number(ev: dict, key: str, peril: str, default: float | None, lo: float, hi: float,
                  *, lo_open: bool = True) -> float:
    """A numeric key of a forced event, range-checked."""
    if key not in ev:
        if default is None:
            raise ForcedEventError(f"forced_events[{peril!r}]: key {key!r} is required")
        return float(default)
    v = ev[key]
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
        raise ForcedEventError(f"forced_events[{peril!r}]: key {key!r} must be a finite number, got {v!r}")
    v = float(v)
    if (v <= lo if lo_open else v < lo) or v > hi:
        raise ForcedEventError(
            f"forced_events[{peril!r}]: key {key!r} = {v} must lie in {'(' if lo_open else '['}{lo}, {hi}]")
    return v


def forced_counties(ev: dict, peril: str, county_labels: np.ndarray, county_code: np.ndarray) -> np.ndarray:
    """Boolean mask over parcels of the counties named by ``ev['counties']`` (all parcels when absent).

    County names must match the portfolio's ``county`` column exactly; a named county with no parcel
    in this portfolio simply hits nothing (a scenario written for the whole city may run on part of it).
    """
    if "counties" not in ev:
        return np.ones(county_code.shape, dtype=bool)
    names = ev["counties"]
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
        raise ForcedEventError(f"forced_events[{peril!r}]: key 'counties' must be a non-empty list of county names")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ForcedEventError(f"forced_events[{peril!r}]: key 'counties' holds non-text or empty names {bad!r}")
    wanted = {n.strip() for n in names}
    in_list = np.array([lab in wanted for lab in county_labels], dtype=bool)
    return in_list[county_code]


def county_codes(portfolio: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-parcel county code, the county labels, and their random-stream keys.

    Counties are keyed by their name (a stable label), so a county's draws do not depend on which
    other counties the portfolio holds.
    """
    from models.rng import group_keys

    labels, code = np.unique(portfolio.frame["county"].to_numpy(str), return_inverse=True)
    return code.astype(np.intp), labels.astype(object), group_keys([f"county:{c}" for c in labels])


def combine_losses(path_pos: np.ndarray, parcel_pos: np.ndarray, fraction: np.ndarray, event: np.ndarray,
                   n_parcels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge repeated (path, parcel) pairs: survival multiplies, the event is the largest loss's.

    Returns path_pos, parcel_pos, fraction, event with each pair once, sorted by (path, parcel).
    Within a pair the losses are taken largest first (ties in input order) and the survival
    ``sum(log1p(-loss))`` is added in that order; a pair hit once keeps its loss exactly.
    :func:`reference_combine_losses` is the plain
    numpy definition (lexsort and bincount), which the compiled sort reproduces bit for bit.
    """
    if path_pos.size == 0:
        return path_pos, parcel_pos, fraction, event
    pp = np.ascontiguousarray(path_pos, dtype=np.int64)
    qq = np.ascontiguousarray(parcel_pos, dtype=np.int64)
    fraction = np.ascontiguousarray(fraction, dtype=np.float64)
    order, first = pair_order(pp, qq, fraction, int(pp.max()) + 1, int(n_parcels))
    fs = fraction[order]
    log_keep, full = group_sums(np.log1p(-np.minimum(fs, 1.0 - 1e-15)), first, fs >= 1.0)
    frac = -np.expm1(log_keep)
    frac[full] = 1.0
    _keep_single_losses(frac, fs, first)
    head = order[first]
    return pp[head], qq[head], frac, np.asarray(event)[head]


def _keep_single_losses(frac: np.ndarray, sorted_fraction: np.ndarray, first: np.ndarray) -> None:
    """A pair hit once keeps its loss exactly: ``-expm1(log1p(-f))`` can differ from ``f`` in the last
    bit, and whether a pair goes through the merge must not depend on which other paths share the
    block (a chunk with no path hit twice need not call :func:`combine_losses` at all)."""
    starts = np.flatnonzero(first)
    single = np.diff(np.append(starts, first.size)) == 1
    frac[single] = sorted_fraction[starts[single]]


def reference_combine_losses(path_pos: np.ndarray, parcel_pos: np.ndarray, fraction: np.ndarray,
                             event: np.ndarray, n_parcels: int
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Plain-numpy definition of :func:`combine_losses` (the tests hold the compiled one to it)."""
    if path_pos.size == 0:
        return path_pos, parcel_pos, fraction, event
    pair = path_pos.astype(np.int64) * n_parcels + parcel_pos
    order = np.lexsort((-fraction, pair))  # by pair, largest loss first
    pair, fraction, event = pair[order], fraction[order], event[order]
    first = np.ones(pair.size, dtype=bool)
    first[1:] = pair[1:] != pair[:-1]
    grp = np.cumsum(first) - 1
    log_keep = np.bincount(grp, weights=np.log1p(-np.minimum(fraction, 1.0 - 1e-15)))
    frac = -np.expm1(log_keep)
    frac[np.bincount(grp, weights=(fraction >= 1.0).astype(float)) > 0] = 1.0
    _keep_single_losses(frac, fraction, first)
    up = pair[first]
    return (up // n_parcels).astype(np.int64), (up % n_parcels).astype(np.int64), frac, event[first]


def parcel_keys_u64(rnd: Any) -> np.ndarray:
    """The random streams' parcel keys as a contiguous uint64 array (the compiled screens' input)."""
    return np.ascontiguousarray(rnd.parcel_keys, dtype=np.uint64)


def capacity_estimate(expected_hits: float, limit: int) -> int:
    """Initial output size of a compiled screen: the expected number of hits with a margin of
    about six standard deviations, at most ``limit`` (the screens grow their outputs if needed)."""
    e = max(float(expected_hits), 0.0)
    return int(min(limit, 1.05 * e + 6.0 * np.sqrt(e) + 256))


def stand_rows_hash(rnd: Any, stream: str, year: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Per-path hash rows of ``stream`` (``KeyedRandom._rows``), optionally for some path positions.

    ``KeyedRandom(seed, path_ids[rows], keys)._rows(...)`` equals ``rnd._rows(...)[rows]`` (each
    path's row depends on its id only), so a subset of paths never needs its own KeyedRandom.
    """
    full = rnd._rows(stream, year)
    return full if rows is None else np.ascontiguousarray(full[rows])


def running_event_index(path_pos: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each path for pairs sorted by path (separate events such as fires)."""
    if path_pos.size == 0:
        return np.empty(0, dtype=np.int64)
    start = np.ones(path_pos.size, dtype=bool)
    start[1:] = path_pos[1:] != path_pos[:-1]
    idx = np.arange(path_pos.size)
    first_idx = np.maximum.accumulate(np.where(start, idx, 0))
    return (idx - first_idx).astype(np.int64)


def stand_replacing_threshold(model: Any) -> float:
    return float(model.file.regeneration.stand_replacing_loss_fraction.value)
