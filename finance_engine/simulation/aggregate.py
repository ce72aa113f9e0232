"""Summing parcel values into account levels, deterministically.

Parcels are permuted once into the order of their full administrative path
(province/city/county/township/village), so every administrative group is a contiguous run and
``numpy.add.reduceat`` sums it in a fixed parcel order. Coarser levels are sums of the village sums
(contiguous runs again), so a county is *by construction* the sum of its villages, for every path.
Each path's sums are independent of how many paths are processed together, which keeps results
bit-identical across chunk sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
        self._other: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for lv in self.levels:
            if lv not in self.groups:
                codes, labels = portfolio.level_codes(lv)
                g = codes.astype(np.intp)
                self.groups[lv] = LevelGroups(lv, labels, g)
                perm = np.argsort(g, kind="stable")
                self._other[lv] = (perm, _runs(g[perm]))
        self.groups = {lv: self.groups[lv] for lv in self.levels}

    def sum_dense(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Sum an (n_paths, n_parcels) array into every level: level -> (n_paths, n_groups)."""
        out: dict[str, np.ndarray] = {}
        need_admin = any(lv in LEVELS or lv == "portfolio" for lv in self.levels)
        if need_admin:
            village = np.add.reduceat(values[:, self._perm_v], self._starts_v, axis=1)
            coarser = {"village": village}
            for lv in LEVELS[:-1]:
                coarser[lv] = np.add.reduceat(village, self._rollup[lv], axis=1)
            for lv in self.levels:
                if lv in LEVELS:
                    out[lv] = coarser[lv]
                elif lv == "portfolio":
                    out[lv] = np.add.reduceat(coarser["province"], [0], axis=1)
        for lv, (perm, starts) in self._other.items():
            out[lv] = np.add.reduceat(values[:, perm], starts, axis=1)
        if "parcel" in self.levels:
            out["parcel"] = values
        return out

    def sum_level(self, values: np.ndarray, level: str) -> np.ndarray:
        """Sum an (n_paths, n_parcels) array into one non-administrative level (e.g. project_id)."""
        perm, starts = self._other[level]
        return np.add.reduceat(values[:, perm], starts, axis=1)

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
