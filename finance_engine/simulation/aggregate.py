"""Summing parcel values into account levels, deterministically.

A path's village sums add each village's parcels in ascending parcel order, one path row at a
time (a compiled loop, :func:`models._kernels.sum_by_group`; the same order as SciPy's sparse
indicator product, which the tests use as the reference); coarser administrative levels are sums
of the village sums, so a county is *by construction* the sum of its villages, for every path.
Each row's result does not depend on how many paths are processed together (the tests check
this), which keeps results bit-identical across chunk sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    return sum_by_group(values, group, n_groups, np.empty((values.shape[0], n_groups)))


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
        n_v = self.groups["village"].n_groups
        # village -> coarser level: the group of the first parcel of each village
        first_parcel_of_village = self._perm_v[self._starts_v]
        self._village_of_parcel = np.ascontiguousarray(self.groups["village"].parcel_group, dtype=np.intp)
        self._n_village = n_v
        self._level_of_village = {lv: np.ascontiguousarray(self.groups[lv].parcel_group[first_parcel_of_village],
                                                           dtype=np.intp) for lv in LEVELS[:-1]}
        self.groups_all = dict(self.groups)
        self.groups = {lv: self.groups[lv] for lv in self.levels}

    def sum_dense(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Sum an (n_paths, n_parcels) array into every level: level -> (n_paths, n_groups)."""
        out: dict[str, np.ndarray] = {}
        values = np.ascontiguousarray(values, dtype=np.float64)
        if any(lv in LEVELS or lv == "portfolio" for lv in self.levels):
            village = _sum(values, self._village_of_parcel, self._n_village)
            coarser = {"village": village}
            for lv in LEVELS[:-1]:
                coarser[lv] = _sum(village, self._level_of_village[lv], self.groups_all[lv].n_groups)
            coarser["portfolio"] = _sum(coarser["province"], np.zeros(coarser["province"].shape[1], np.intp), 1)
            for lv in self.levels:
                if lv in coarser:
                    out[lv] = coarser[lv]
        for lv in self._other:
            g = self.groups_all[lv]
            out[lv] = _sum(values, g.parcel_group, g.n_groups)
        if "parcel" in self.levels:
            out["parcel"] = values
        return out

    def sum_level(self, values: np.ndarray, level: str) -> np.ndarray:
        """Sum an (n_paths, n_parcels) array into one non-administrative level (e.g. project_id)."""
        g = self.groups_all[level]
        return _sum(np.ascontiguousarray(values, dtype=np.float64), g.parcel_group, g.n_groups)

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
