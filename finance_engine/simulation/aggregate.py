"""Summing parcel values into account levels, deterministically.

Parcels are first summed into *cells*: the coarsest partition that every requested level is a
union of (the groups of the finest administrative level asked for, split further by project or
species group when those levels are asked for). A path's cell sums add each cell's parcels in
ascending parcel order, one path row at a time (a compiled loop:
:func:`models._kernels.sum_by_group` for dense arrays, the stand simulator's growth pass for stock
and growth, :func:`~finance_engine.simulation._kernels.sum_sparse_by_group` for sparse losses).
The finest administrative level asked for is the sum of its cells, each coarser level asked for
the sum of the next finer one, and the portfolio the sum of the coarsest: a reported county's
stock, growth, losses, harvest and credits are *by construction* the sums of its reported villages',
for every path. (Sink and background mortality are differences -- end minus start, and the stock
identity's residual -- taken at each level, so they add up across levels only to rounding. A
portfolio total depends, in the last bits, on which levels were asked for alongside it, the event
loss table's level included, because they shape the cells.) Each
row's result does not depend on how many paths are processed together (the tests check this),
which keeps results bit-identical across chunk sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finance_engine.simulation._kernels import is_sorted_pairs, sum_sparse_by_group
from models._kernels import sum_by_group
from models.portfolio import LEVELS, Portfolio


@dataclass(frozen=True)
class LevelGroups:
    """How to sum parcels into the groups of one level."""

    level: str
    labels: np.ndarray           # (n_groups,) group labels (full path for admin levels)
    parcel_group: np.ndarray     # (n_parcels,) group index of each parcel

    @property
    def n_groups(self) -> int:
        return int(self.labels.size)


def _sum(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    if n_groups == values.shape[1] and _is_identity(group):
        return values.copy()  # each group is one column: its sum is the column (adding to 0.0 is exact)
    return sum_by_group(values, group, n_groups, np.empty((values.shape[0], n_groups)))


def _is_identity(group: np.ndarray) -> bool:
    return bool(group.size == 0 or (group[0] == 0 and np.array_equal(group, np.arange(group.size))))


class Aggregator:
    """Sums (n_paths, n_parcels) arrays into (n_paths, n_groups) arrays for several levels."""

    def __init__(self, portfolio: Portfolio, levels: tuple[str, ...]):
        self.levels = tuple(levels)
        self.n_parcels = portfolio.n_parcels
        frame = portfolio.frame
        cols = [frame[lv].to_numpy(str) for lv in LEVELS]
        # parcel order by full administrative path (stable: canonical order within a village)
        self._perm_v = np.lexsort(cols[::-1])
        sorted_cols = [c[self._perm_v] for c in cols]
        # run starts per depth: a new group starts wherever any component up to that depth changes
        change = np.zeros(self.n_parcels, dtype=bool)
        change[0] = True
        parcel_runs: dict[str, np.ndarray] = {}
        for lv, c in zip(LEVELS, sorted_cols):
            change[1:] |= c[1:] != c[:-1]
            parcel_runs[lv] = np.flatnonzero(change)
        self._starts_v = parcel_runs["village"]
        self.groups: dict[str, LevelGroups] = {}
        for depth, lv in enumerate(LEVELS, start=1):
            starts = parcel_runs[lv]
            labels = np.array(["/".join(c[i] for c in sorted_cols[:depth]) for i in starts], dtype=object)
            is_start = np.zeros(self.n_parcels, dtype=bool)
            is_start[starts] = True
            parcel_group = np.empty(self.n_parcels, dtype=np.intp)
            parcel_group[self._perm_v] = np.cumsum(is_start) - 1
            self.groups[lv] = LevelGroups(lv, labels, parcel_group)
        self.groups["portfolio"] = LevelGroups("portfolio", np.array(["portfolio"], dtype=object),
                                               np.zeros(self.n_parcels, dtype=np.intp))
        self.groups["parcel"] = LevelGroups("parcel", portfolio.parcel_id.copy(), np.arange(self.n_parcels))
        self._other: list[str] = []
        for lv in self.levels:
            if lv not in self.groups:
                codes, labels = portfolio.level_codes(lv)
                self.groups[lv] = LevelGroups(lv, labels, np.ascontiguousarray(codes, dtype=np.intp))
                self._other.append(lv)
        # The administrative levels asked for are chained: the finest is summed from parcels (through
        # cells), each coarser one from the next finer one asked for, and the portfolio from the
        # coarsest; so every reported county is by construction the sum of its reported villages.
        self._admin_chain = [lv for lv in reversed(LEVELS) if lv in self.levels]
        if self._admin_chain:
            base = self.groups[self._admin_chain[0]].parcel_group
        else:
            base = np.zeros(self.n_parcels, dtype=np.intp)
        # cells: unique (finest admin group, other level codes) combinations, ordered by the former
        codes = [base] + [self.groups[lv].parcel_group for lv in self._other]
        cell_rows, cell_of_parcel = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
        self.cell_of_parcel = np.ascontiguousarray(cell_of_parcel.reshape(-1), dtype=np.intp)
        self.n_cells = int(cell_rows.shape[0])
        self._base_of_cell = np.ascontiguousarray(cell_rows[:, 0], dtype=np.intp)
        self._n_base = int(base.max(initial=-1)) + 1
        self._other_of_cell = {lv: np.ascontiguousarray(cell_rows[:, k + 1], dtype=np.intp)
                               for k, lv in enumerate(self._other)}
        # each chained level -> the next coarser one: the group of the first parcel of each group
        self._coarser_of: dict[str, np.ndarray] = {}
        for fine, coarse in zip(self._admin_chain[:-1], self._admin_chain[1:]):
            first = np.zeros(self.groups[fine].n_groups, dtype=np.intp)
            first[self.groups[fine].parcel_group[::-1]] = np.arange(self.n_parcels)[::-1]
            self._coarser_of[coarse] = np.ascontiguousarray(self.groups[coarse].parcel_group[first], dtype=np.intp)
        self._portfolio = "portfolio" in self.levels
        self.groups_all = dict(self.groups)
        self.groups = {lv: self.groups[lv] for lv in self.levels}

    def from_cells(self, cells: np.ndarray, only: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Cell sums (..., n_cells) -> level -> (..., n_groups), for every level but ``parcel``.

        ``only`` skips the project and species-group levels not in it (the administrative chain and
        the portfolio are always summed: coarser levels come from finer ones).
        """
        out: dict[str, np.ndarray] = {}
        lead = cells.shape[:-1]
        flat = np.ascontiguousarray(cells, dtype=np.float64).reshape(-1, cells.shape[-1])
        top = _sum(flat, self._base_of_cell, self._n_base)
        if self._admin_chain:
            out[self._admin_chain[0]] = top
            for coarse in self._admin_chain[1:]:
                top = _sum(top, self._coarser_of[coarse], self.groups_all[coarse].n_groups)
                out[coarse] = top
        if self._portfolio:
            out["portfolio"] = top if top.shape[1] == 1 and not self._admin_chain else \
                _sum(top, np.zeros(top.shape[1], np.intp), 1)
        for lv in self._other:
            if only is None or lv in only:
                out[lv] = _sum(flat, self._other_of_cell[lv], self.groups_all[lv].n_groups)
        return {lv: v.reshape(*lead, v.shape[1]) for lv, v in out.items()}

    def sum_cells(self, values: np.ndarray) -> np.ndarray:
        """Sum an (n_rows, n_parcels) array into cells: (n_rows, n_cells)."""
        return _sum(np.ascontiguousarray(values, dtype=np.float64), self.cell_of_parcel, self.n_cells)

    def sum_dense(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Sum an (n_paths, n_parcels) array into every level: level -> (n_paths, n_groups)."""
        out = self.from_cells(self.sum_cells(values))
        if "parcel" in self.levels:
            out["parcel"] = values
        return out

    def sparse_cells(self, n_paths: int, path_pos: np.ndarray, parcel_pos: np.ndarray, values: np.ndarray,
                     weight: np.ndarray) -> np.ndarray:
        """Sum sparse entries ``values * weight[parcel]`` into cells: (n_paths, n_cells).

        Entries are put in (path, parcel) order first (when they are not already), so each cell's
        sum runs in parcel order.
        """
        pp = np.ascontiguousarray(path_pos, dtype=np.int64)
        qq = np.ascontiguousarray(parcel_pos, dtype=np.int64)
        vv = np.ascontiguousarray(values, dtype=np.float64)
        if not is_sorted_pairs(pp, qq):
            order = np.lexsort((qq, pp))
            pp, qq, vv = pp[order], qq[order], vv[order]
        return sum_sparse_by_group(pp, qq, vv, np.ascontiguousarray(weight, dtype=np.float64),
                                   self.cell_of_parcel, np.empty((n_paths, self.n_cells)))
