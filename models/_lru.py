"""Small least-recently-used caches kept in plain dicts (in use order, oldest first).

A process keeps a few expensive things it will likely be asked for again -- the engine's set-ups and
their pickled inputs, a landscape's pine wilt pressure table -- each bounded by a count and by a
weight (parcels, bytes). The helpers hold one lock for their short updates: runs on threads share
the caches.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

_LOCK = threading.Lock()


def lru_get(cache: dict, key: Any):
    """``cache[key]`` (None when absent), made the most recently used."""
    with _LOCK:
        value = cache.pop(key, None)
        if value is not None:
            cache[key] = value
        return value


def lru_put(cache: dict, key: Any, value, max_entries: int, weight: Callable[[Any], float] | None = None,
            max_weight: float = float("inf")) -> None:
    """Keep ``value`` as the most recently used, dropping the least recently used beyond ``max_entries``
    or beyond ``max_weight`` of ``weight`` together (the newest always stays)."""
    with _LOCK:
        cache.pop(key, None)
        cache[key] = value
        while len(cache) > 1 and (len(cache) > max_entries
                                  or (weight is not None and sum(weight(v) for v in cache.values()) > max_weight)):
            del cache[next(iter(cache))]


__all__ = ["lru_get", "lru_put"]
