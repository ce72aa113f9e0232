"""The region's pine wilt landscape: the cells the epidemic spreads over, whatever portfolio is run.

Pine wilt disease spreads between forests whoever owns them, so the landscape the epidemic runs on
must not depend on which parcels a run holds. Built from a portfolio's own parcels (as it was until
numbers version 3), a one-township loan saw a 115-cell landscape that the region's epidemic never
reached -- the initial foci in Jingning were not in it -- and its pine wilt loss over 30 years was a
quarter of what the same parcels lost in the city-wide run on the same draws.

A :class:`Landscape` is a fixed list of grid cells (integer coordinates at the pine wilt
``cell_size_km``) with, per cell, the host (pine) area of the region's registry under each
``pest_control`` level and the county and township holding most of its host area (empty for cells
without hosts). A cell's infectivity as a source is computed when a run starts, from those areas and
the parameter file's ``management.pest_control`` multipliers (``background_pest_control`` where it
holds no host), so editing a multiplier needs no new landscape. The labels place the initial epidemic
and the forced outbreaks of stress scenarios on the region's cells: the registry decides which cells
hold pines, so a portfolio parcel in a cell where the registry has none starts uninfected even in an
initial-epidemic county.

:meth:`models.perils.pine_wilt.PineWilt.as_landscape` derives it from a registry of the region's
forest parcels (the bureau's forest inventory; for Lishui the shipped demo registry stands in for it)
exactly as the pine wilt peril builds a portfolio's grid: host parcels' cells dilated by ``grid_buffer_km``. It is stored as
a CSV (:func:`write_landscape`) named in the parameter file with its SHA-256
(``perils.pine_wilt.landscape``), so the parameter hash that every result records covers it;
:func:`read_landscape` checks the hash and every row. ``carbon-risk landscape`` writes one.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.portfolio import MANAGEMENT_LEVELS

#: the pest-control levels whose host areas a landscape keeps, in the portfolio's order
LEVELS = MANAGEMENT_LEVELS
COLUMNS = ("ix", "iy", "county", "township", *(f"host_area_{lv}_ha" for lv in LEVELS))


class LandscapeError(ValueError):
    """A landscape file that cannot be used: names the file, and the row and field where it can."""


@dataclass(frozen=True, eq=False)  # arrays: compared by identity (the parameter file names its SHA-256)
class Landscape:
    """The region's grid cells and what the epidemic needs of them.

    Attributes
    ----------
    ij : ndarray of int64, shape (n_cells, 2)
        Grid coordinates (cell index along x and y at ``cell_size_km``), unique, sorted.
    county, township : ndarray of str, shape (n_cells,)
        Labels of the cell's largest host area ('' where the cell holds no host parcel).
    host_area_by_level : ndarray of float64, shape (n_cells, 3)
        Pine host area of the registry in the cell (ha) under pest-control ``none``, ``basic`` and
        ``enhanced`` (:data:`LEVELS`).
    """

    ij: np.ndarray
    county: np.ndarray
    township: np.ndarray
    host_area_by_level: np.ndarray

    @property
    def n_cells(self) -> int:
        return int(self.ij.shape[0])

    @property
    def host_area_ha(self) -> np.ndarray:
        """Pine host area of each cell (ha)."""
        return self.host_area_by_level.sum(axis=1)

    def infectivity(self, control: np.ndarray, background: float) -> np.ndarray:
        """Each cell's weight as a source of infection (float32): the host area's mean pest-control
        multiplier (``control[k]`` for level ``LEVELS[k]``), ``background`` where it holds no host."""
        area = self.host_area_by_level
        total = area.sum(axis=1)
        weighted = area @ np.asarray(control, dtype=np.float64)
        return np.where(total > 0, weighted / np.where(total > 0, total, 1.0), background).astype(np.float32)


def landscape_csv(landscape: Landscape) -> bytes:
    """The landscape as CSV bytes (UTF-8, ``\\n`` line ends, areas to the square metre)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for k in range(landscape.n_cells):
        w.writerow([int(landscape.ij[k, 0]), int(landscape.ij[k, 1]), landscape.county[k], landscape.township[k],
                    *(f"{float(a):.4f}" for a in landscape.host_area_by_level[k])])
    return out.getvalue().encode("utf-8")


def write_landscape(landscape: Landscape, path: str | Path) -> str:
    """Write the landscape CSV; return its SHA-256 (hex), the value the parameter file names."""
    data = landscape_csv(landscape)
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def parse_landscape(data: bytes, name: str) -> Landscape:
    """Read landscape CSV bytes, checking every row.

    Raises
    ------
    LandscapeError
        Naming ``name``, the row (line number) and the field of the first problem: a missing
        column, a non-integer cell coordinate, a repeated cell, a negative or non-finite area.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LandscapeError(f"{name}: not UTF-8 text ({exc})") from exc
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise LandscapeError(f"{name}: missing column(s) {missing}; a landscape has {list(COLUMNS)}")
    ij, county, township, area = [], [], [], []
    seen: dict[tuple[int, int], int] = {}
    for line, row in enumerate(reader, start=2):
        cell = []
        for field in ("ix", "iy"):
            try:
                cell.append(int(row[field]))
            except (TypeError, ValueError):
                raise LandscapeError(f"{name}: row {line}, field {field}: {row[field]!r} is not a whole number") from None
        key = (cell[0], cell[1])
        if key in seen:
            raise LandscapeError(f"{name}: row {line}, fields ix/iy: cell {key} repeats row {seen[key]}")
        seen[key] = line
        values = []
        for field in COLUMNS[4:]:
            try:
                v = float(row[field])
            except (TypeError, ValueError):
                raise LandscapeError(f"{name}: row {line}, field {field}: {row[field]!r} is not a number") from None
            if not (np.isfinite(v) and v >= 0.0):
                raise LandscapeError(f"{name}: row {line}, field {field}: {v} is not a finite area >= 0")
            values.append(v)
        ij.append(cell)
        county.append(row["county"] or "")
        township.append(row["township"] or "")
        area.append(values)
    if not ij:
        raise LandscapeError(f"{name}: no cells")
    ij_a = np.asarray(ij, dtype=np.int64)
    order = np.lexsort((ij_a[:, 1], ij_a[:, 0]))  # the order build_grid gives its cells
    return Landscape(ij=ij_a[order], county=np.asarray(county, dtype=str)[order],
                     township=np.asarray(township, dtype=str)[order],
                     host_area_by_level=np.asarray(area, dtype=np.float64).reshape(-1, len(LEVELS))[order])


_LOADED: dict[tuple[str, str], Landscape] = {}


def read_landscape(path: str | Path, sha256: str | None = None) -> Landscape:
    """Read and check a landscape file (cached per path and hash).

    Parameters
    ----------
    path : str or Path
    sha256 : str, optional
        The hash the parameter file names: a file with other content is refused (the results'
        parameter hash would not describe it).
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise LandscapeError(f"{p}: cannot read the pine wilt landscape ({exc.strerror})") from exc
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256.lower():
        raise LandscapeError(f"{p}: SHA-256 {digest} differs from the {sha256} the parameter file names "
                             f"(rebuild it with `carbon-risk landscape`, or name the new hash)")
    key = (str(p.resolve()), digest)
    hit = _LOADED.get(key)
    if hit is None:
        hit = parse_landscape(data, str(p))
        _LOADED[key] = hit
    return hit


def majority_labels(cell: np.ndarray, n_cells: int, weight: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per cell, the label with the largest summed weight among its members ('' for empty cells;
    ties go to the label that sorts first)."""
    out = np.full(n_cells, "", dtype=object)
    if cell.size == 0:
        return out.astype(str)
    names, code = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    totals = np.zeros((n_cells, names.size))
    np.add.at(totals, (cell, code), weight)
    has = totals.sum(axis=1) > 0
    out[has] = names[np.argmax(totals[has], axis=1)]
    return out.astype(str)


__all__ = ["COLUMNS", "LEVELS", "Landscape", "LandscapeError", "landscape_csv", "majority_labels", "parse_landscape",
           "read_landscape", "write_landscape"]
