"""Counter-based, keyed random numbers.

Every random number the model consumes is a pure function of ``(seed, stream, year, path, parcel)``:
a SplitMix64-style hash of the key (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number
generators", OOPSLA; the finaliser is the one used by ``java.util.SplittableRandom``). That is what
makes a run bit-identical whatever the chunk size, the number of workers, the order in which chunks
run, or the row order of the portfolio file, and why removing one parcel leaves every other parcel's
draws unchanged: parcels are keyed by a hash of their stable ``parcel_id``, paths by their global
index, never by a position in an array.

The draws are unchanged; a result can still depend on the other parcels where a process couples them.
Two do:

* Pine wilt's epidemic beyond the region's landscape. Pine hosts outside the shipped landscape
  (:mod:`models.perils.pine_wilt`) extend its grid with cells of their own, dilated around them, whose
  epidemic (driven by the region's, which it does not change) is the portfolio's own. Its cells are
  coupled near and far: removing such a host can remove extension cells its neighbours share or change
  their infectivity (their hosts' pest control), and the long-distance jump pressure of every cell of the
  extended grid (jump rate x the infected cells' total infectivity / the grid's cell count,
  :meth:`~models.perils.pine_wilt.PineWilt.cell_hazard`) counts all its cells, so removing a host in one
  cluster beyond the landscape also changes pine wilt infections and losses in a distant cluster beyond
  it. Parcels inside the landscape, which follow the region's own process, keep their pine wilt results,
  and every other peril keeps every parcel's (a run records its outside hosts in its ``model_notes``,
  ``pine_wilt_hosts_outside_landscape``).
* Crediting. A parcel's credits are its share of its project's issuance, and the issuance is the
  project's (its net change since the last verification, the buffer, a deficit carried forward):
  removing a parcel changes the credits of the other parcels of its project (not those of other
  projects; crediting changes no parcel's carbon or losses).

The streams are named (``"fire.hazard"``, ``"fire.damage"``, ...), so a peril's hazard and damage
draws are independent by construction, and a new peril gets new streams without shifting old ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import ndtri

from models._kernels import keyed_rows, keyed_uniform_grid, keyed_uniform_pairs

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_TO_UNIT = 2.0**-53


def _mix_int(z: int) -> int:
    """SplitMix64 finaliser on a Python int (scalar keys)."""
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _mix_inplace(z: np.ndarray, tmp: np.ndarray | None = None) -> np.ndarray:
    """SplitMix64 finaliser applied in place to a uint64 array."""
    if tmp is None:
        tmp = np.empty_like(z)
    np.right_shift(z, _S30, out=tmp)
    z ^= tmp
    z *= _M1
    np.right_shift(z, _S27, out=tmp)
    z ^= tmp
    z *= _M2
    np.right_shift(z, _S31, out=tmp)
    z ^= tmp
    return z


@lru_cache(maxsize=4096)
def stream_key(name: str) -> int:
    """Stable 64-bit key of a named stream (BLAKE2b of its UTF-8 name)."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")


def parcel_keys(parcel_ids) -> np.ndarray:
    """Stable 64-bit keys of parcel ids (BLAKE2b of the id's UTF-8 text)."""
    out = np.empty(len(parcel_ids), dtype=np.uint64)
    for i, pid in enumerate(parcel_ids):
        out[i] = int.from_bytes(hashlib.blake2b(str(pid).encode("utf-8"), digest_size=8).digest(), "little")
    return out


def group_keys(labels) -> np.ndarray:
    """Stable 64-bit keys for any labels (counties, grid cells, ...)."""
    return parcel_keys(labels)


def _to_unit(z: np.ndarray) -> np.ndarray:
    """uint64 -> float64 in (0, 1]: 53 random bits plus a half-ulp offset.

    The largest hash rounds to exactly 1.0 (probability 2**-53): harmless for ``u < p`` tests, and
    :func:`normal_from_uniform` keeps it away from ``ndtri(1) = inf``.
    """
    u = (z >> np.uint64(11)).astype(np.float64)
    u += 0.5
    u *= _TO_UNIT
    return u


_BELOW_ONE = float(np.nextafter(1.0, 0.0))


def normal_from_uniform(u: np.ndarray) -> np.ndarray:
    """Standard normal quantile of keyed uniforms, finite for every draw (1.0 maps to ndtri(1 - 2**-53))."""
    return ndtri(np.minimum(u, _BELOW_ONE))


def _grid(rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Uniforms for every (row, key): the compiled kernel (equal to :func:`reference_grid`)."""
    return keyed_uniform_grid(rows, keys, np.empty((rows.size, keys.size)))


def _pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Uniforms for aligned (row, key) pairs: the compiled kernel."""
    a = np.ascontiguousarray(a, dtype=np.uint64)
    b = np.ascontiguousarray(b, dtype=np.uint64)
    return keyed_uniform_pairs(a, b, np.empty(a.size))


def reference_grid(rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The plain-numpy definition of :func:`_grid` (the tests hold the kernel to it)."""
    z = np.asarray(rows, dtype=np.uint64)[:, None] ^ np.asarray(keys, dtype=np.uint64)[None, :]
    return _to_unit(_mix_inplace(z))


#: the base hash of each (seed, stream, year), kept across chunks: a chunk-year asks for some 25 of them,
#: each two scalar mixes in Python (under the GIL that a run's threads share)
_BASES: dict[tuple, int] = {}
_BASES_MAX = 1 << 16


@dataclass(frozen=True)
class KeyedRandom:
    """Random numbers for a block of paths over a fixed set of parcels.

    Parameters
    ----------
    seed : int
        The run's seed (0 <= seed < 2**64).
    path_ids : ndarray of int
        Global indices of the paths in this block (not positions).
    parcel_keys : ndarray of uint64
        Keys of the parcels, from :func:`parcel_keys`.
    """

    seed: int
    path_ids: np.ndarray
    parcel_keys: np.ndarray

    def __post_init__(self) -> None:
        if not 0 <= int(self.seed) <= _MASK:
            raise ValueError(f"seed must lie in [0, 2**64), got {self.seed}")

    @property
    def n_paths(self) -> int:
        return int(len(self.path_ids))

    @property
    def n_parcels(self) -> int:
        return int(len(self.parcel_keys))

    def _base(self, stream: str, year: int) -> int:
        key = (self.seed, stream, year)
        base = _BASES.get(key)
        if base is None:
            if len(_BASES) > _BASES_MAX:
                _BASES.clear()
            base = _BASES[key] = _mix_int(_mix_int(int(self.seed) ^ stream_key(stream))
                                          ^ ((int(year) + 1) * _GOLDEN & _MASK))
        return base

    def _rows(self, stream: str, year: int) -> np.ndarray:
        """mix(path_id * golden ^ base) per path: the compiled kernel (equal to :meth:`reference_rows`)."""
        ids = self._ids_u64
        return keyed_rows(ids, np.uint64(self._base(stream, year)), np.empty(ids.size, dtype=np.uint64))

    def reference_rows(self, stream: str, year: int) -> np.ndarray:
        """The plain-numpy definition of the row hashes (the tests hold the kernel to it)."""
        base = np.uint64(self._base(stream, year))
        z = np.asarray(self.path_ids, dtype=np.uint64) * np.uint64(_GOLDEN)
        z ^= base
        return _mix_inplace(z)

    @property
    def _ids_u64(self) -> np.ndarray:
        ids = self.__dict__.get("_ids_cache")
        if ids is None:
            ids = np.ascontiguousarray(self.path_ids, dtype=np.uint64)
            object.__setattr__(self, "_ids_cache", ids)
        return ids

    def stream_rows(self, stream: str, year: int = 0) -> np.ndarray:
        """Shape (n_paths,) uint64: the keyed row hash of each path for a stream and year.

        A compiled kernel turns row ``r`` and parcel key ``k`` into the uniform
        ``unit(mix(r ^ k))``, exactly :meth:`parcel_uniform`'s number, without the dense array.
        """
        return self._rows(stream, year)

    # ---- one number per path ---------------------------------------------------------
    def path_uniform(self, stream: str, year: int = 0) -> np.ndarray:
        """Shape (n_paths,): one uniform per path (shared by all parcels)."""
        return _to_unit(self._rows(stream, year))

    def path_normal(self, stream: str, year: int = 0) -> np.ndarray:
        return normal_from_uniform(self.path_uniform(stream, year))

    # ---- one number per (path, key) -------------------------------------------------
    def keyed_uniform(self, stream: str, year: int, keys: np.ndarray) -> np.ndarray:
        """Shape (n_paths, len(keys)): one uniform per path and key (parcel, county, cell...)."""
        return _grid(self._rows(stream, year), np.ascontiguousarray(keys, dtype=np.uint64))

    def parcel_uniform(self, stream: str, year: int = 0) -> np.ndarray:
        """Shape (n_paths, n_parcels)."""
        return self.keyed_uniform(stream, year, self.parcel_keys)

    def parcel_normal(self, stream: str, year: int = 0) -> np.ndarray:
        return normal_from_uniform(self.parcel_uniform(stream, year))

    def sparse_uniform(self, stream: str, year: int, path_pos: np.ndarray, parcel_pos: np.ndarray) -> np.ndarray:
        """Uniforms at selected (path position, parcel position) pairs only.

        Equal to ``parcel_uniform(stream, year)[path_pos, parcel_pos]`` at a cost proportional to the
        number of pairs: used for damage draws of rare events.
        """
        rows = self._rows(stream, year)
        return _pairs(rows[np.asarray(path_pos)], self.parcel_keys[np.asarray(parcel_pos)])

    @property
    def path_ids_u64(self) -> np.ndarray:
        """The paths' global ids as contiguous uint64 (what the compiled row hashes take)."""
        return self._ids_u64

    def stream_bases(self, streams: list[str], year: int) -> np.ndarray:
        """Shape (len(streams),) uint64: each stream's base hash this year. A compiled kernel gives
        path id ``p``'s row of stream ``k`` as ``mix(p * golden ^ bases[k])``, :meth:`stream_rows`'
        number, for the few paths it needs."""
        return np.array([self._base(s, year) for s in streams], dtype=np.uint64)

    def sparse_keyed_uniform(self, stream: str, year: int, path_pos: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Uniforms at (path position, key) pairs; ``keys`` is aligned with ``path_pos``."""
        rows = self._rows(stream, year)
        return _pairs(rows[np.asarray(path_pos)], np.asarray(keys, dtype=np.uint64))

    def by_parameter_set(self, set_size: int) -> "KeyedRandom":
        """The same seed and parcels keyed by parameter set (path id // ``set_size``) instead of by
        path: the draws every path of a set shares (its uncertain parameters)."""
        return KeyedRandom(self.seed, np.asarray(self.path_ids) // max(int(set_size), 1), self.parcel_keys)

    def subset_parcels(self, positions: np.ndarray) -> "KeyedRandom":
        """The same streams restricted to some parcels (their draws are unchanged)."""
        return KeyedRandom(self.seed, self.path_ids, self.parcel_keys[positions])


__all__ = ["KeyedRandom", "group_keys", "normal_from_uniform", "parcel_keys", "stream_key"]
