"""Summing parcel values into account levels, deterministically.

Every level is a sparse 0/1 indicator matrix (parcels x groups). A path's village sums are
``values @ S_village`` (SciPy's CSR product adds each village's parcels in a fixed parcel order,
one path row at a time); coarser administrative levels are sums of the village sums through
village -> level indicators, so a county is *by construction* the sum of its villages, for every
path. Each row's result does not depend on how many paths are processed together (the tests
check this), which keeps results bit-identical across chunk sizes. The sparse product is 4-6x
faster than a gather followed by ``numpy.add.reduceat`` on these shapes (benchmarked).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from models.portfolio import LEVELS, Portfolio


def _runs(sorted_labels: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted label array."""
    if sorted_labels.size == 0:
        return np.zeros(0, dtype=np.intp)
    change = np.ones(sorted_labels.size, dtype=bool)
    change[1:] = sorted_labels[1:] != sorted_labels[:-1]
    return np.flatnonzero(change)


@dataclass(frozen=True)
class LevelGroups:
    """How to sum parcels into the groups of one level."""

    level: str
    labels: np.ndarray           # (n_groups,) group labels (full path for admin levels)
    parcel_group: np.ndarray     # (n_parcels,) group index of each parcel

    @property
    def n_groups(self) -> int:
        return int(self.labels.size)


def _indicator(group_of_item: np.ndarray, n_groups: int) -> sp.csr_matrix:
    """Sparse (items x groups) 0/1 matrix with one 1 per item."""
    n = group_of_item.size
    return sp.csr_matrix((np.ones(n), (np.arange(n), group_of_item)), shape=(n, n_groups))


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
        self._rollup: dict[str, np.ndarray] = {}
        for depth, lv in enumerate(LEVELS, start=1):
            starts = parcel_runs[lv]
            labels = np.array(["/".join(c[i] for c in sorted_cols[:depth]) for i in starts], dtype=object)
            group_sorted = np.cumsum(np.isin(np.arange(self.n_parcels), starts)) - 1
            parcel_group = np.empty(self.n_parcels, dtype=np.intp)
            parcel_group[self._perm_v] = group_sorted
            self.groups[lv] = LevelGroups(lv, labels, parcel_group)
            # villages -> this level: the village index at which each group of this level starts
            self._rollup[lv] = np.searchsorted(self._starts_v, starts)
        self.groups["portfolio"] = LevelGroups("portfolio", np.array(["portfolio"], dtype=object),
                                               np.zeros(self.n_parcels, dtype=np.intp))
        self.groups["parcel"] = LevelGroups("parcel", portfolio.parcel_id.copy(), np.arange(self.n_parcels))
        self._other: dict[str, sp.csr_matrix] = {}
        for lv in self.levels:
            if lv not in self.groups:
                codes, labels = portfolio.level_codes(lv)
                g = codes.astype(np.intp)
                self.groups[lv] = LevelGroups(lv, labels, g)
                self._other[lv] = _indicator(g, len(labels))
        n_v = self.groups["village"].n_groups
        self._s_village = _indicator(self.groups["village"].parcel_group, n_v)
        # village -> coarser level: the group of the first parcel of each village
        first_parcel_of_village = self._perm_v[self._starts_v]
        self._r_level = {lv: _indicator(self.groups[lv].parcel_group[first_parcel_of_village], self.groups[lv].n_groups)
                         for lv in LEVELS[:-1]}
        self._r_level["portfolio"] = _indicator(np.zeros(self.groups["province"].n_groups, dtype=np.intp), 1)
        self.groups = {lv: self.groups[lv] for lv in self.levels}

    def sum_dense(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Sum an (n_paths, n_parcels) array into every level: level -> (n_paths, n_groups)."""
        out: dict[str, np.ndarray] = {}
        if any(lv in LEVELS or lv == "portfolio" for lv in self.levels):
            village = np.asarray(values @ self._s_village)
            coarser = {"village": village}
            for lv in LEVELS[:-1]:
                coarser[lv] = np.asarray(village @ self._r_level[lv])
            coarser["portfolio"] = np.asarray(coarser["province"] @ self._r_level["portfolio"])
            for lv in self.levels:
                if lv in coarser:
                    out[lv] = coarser[lv]
        for lv, s_mat in self._other.items():
            out[lv] = np.asarray(values @ s_mat)
        if "parcel" in self.levels:
            out["parcel"] = values
        return out

    def sum_level(self, values: np.ndarray, level: str) -> np.ndarray:
        """Sum an (n_paths, n_parcels) array into one non-administrative level (e.g. project_id)."""
        return np.asarray(values @ self._other[level])

    def sum_sparse(self, n_paths: int, path_pos: np.ndarray, parcel_pos: np.ndarray,
                   values: np.ndarray) -> dict[str, np.ndarray]:
        """Sum sparse (path, parcel, value) entries into every level: level -> (n_paths, n_groups).

        Entries are first sorted by (path, parcel), so each group's sum runs in parcel order.
        """
        order = np.lexsort((parcel_pos, path_pos))
        pp, qq, vv = path_pos[order], parcel_pos[order], values[order]
        out: dict[str, np.ndarray] = {}
        for lv in self.levels:
            g = self.groups[lv]
            arr = np.zeros((n_paths, g.n_groups))
            np.add.at(arr, (pp, g.parcel_group[qq]), vv)
            out[lv] = arr
        return out
