"""Perils that destroy forest carbon, one module each, behind one interface (:mod:`models.perils.base`).

The registry below maps a peril's name (its block under ``perils:`` in the parameter file) to its
class. The stand simulator builds the enabled perils in ``order``.
"""

from __future__ import annotations

import threading
from typing import Any

from pydantic import ValidationError

from models.perils.base import Peril, PerilLosses, PerilParams, StandState, YearContext

PERIL_CLASSES: dict[str, type[Peril]] = {}


def register(cls: type[Peril]) -> type[Peril]:
    """Class decorator: add a peril to the registry (names and codes must be unique)."""
    if cls.name in PERIL_CLASSES and PERIL_CLASSES[cls.name] is not cls:
        raise ValueError(f"peril name {cls.name!r} registered twice")
    if any(c.code == cls.code and c is not cls for c in PERIL_CLASSES.values()):
        raise ValueError(f"peril code {cls.code} registered twice")
    PERIL_CLASSES[cls.name] = cls
    return cls


_LOADED = threading.Event()
_LOAD_LOCK = threading.RLock()


def _load_builtin() -> None:
    """Import the built-in peril modules, which registers them (once per process: listing the package
    took 2.4 ms of each simulator's 12 ms set-up)."""
    if _LOADED.is_set():
        return
    import importlib
    import pkgutil

    with _LOAD_LOCK:
        if _LOADED.is_set():
            return
        for mod in pkgutil.iter_modules(__path__):
            if mod.name not in ("base",) and not mod.name.startswith("_"):
                importlib.import_module(f"{__name__}.{mod.name}")
        _LOADED.set()


def validate_peril_parameters(raw: dict[str, Any], model_file: Any) -> dict[str, PerilParams]:
    """Validate every ``perils.<name>`` block with its peril's own schema.

    Blocks that are not perils (for example shared ``cascades`` or ``climate`` settings) are
    validated by the modules that register them under those names.
    """
    _load_builtin()
    unknown = [k for k in raw if k not in PERIL_CLASSES and k not in AUXILIARY_BLOCKS]
    if unknown:
        raise ValueError(f"unknown peril block(s) {unknown}; known: {sorted(PERIL_CLASSES) + sorted(AUXILIARY_BLOCKS)}")
    out: dict[str, Any] = {}
    problems: list[str] = []
    for name, block in raw.items():
        try:
            if name in PERIL_CLASSES:
                out[name] = PERIL_CLASSES[name].validate_params(block or {}, model_file)
            else:
                out[name] = AUXILIARY_BLOCKS[name].model_validate(block or {})
        except ValidationError as exc:
            for e in exc.errors():
                loc = ".".join(str(x) for x in e["loc"])
                problems.append(f"perils.{name}{'.' + loc if loc else ''}: {e['msg']}")
        except ValueError as exc:
            problems.append(f"perils.{name}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return out


def attach_peril_data(perils: dict[str, Any], base_dir: Any) -> dict[str, Any]:
    """Each peril block with the data files it names read, checked and attached (``base_dir``: the
    parameter file's folder). Raises ``ValueError`` naming the block and the file."""
    out = dict(perils)
    for name, block in perils.items():
        cls = PERIL_CLASSES.get(name)
        if cls is not None:
            try:
                out[name] = cls.attach_data(block, base_dir)
            except ValueError as exc:
                raise ValueError(f"perils.{name}: {exc}") from exc
    return out


# Non-peril blocks under ``perils:`` (name -> pydantic model), registered by their modules.
AUXILIARY_BLOCKS: dict[str, Any] = {}


def peril_classes() -> dict[str, type[Peril]]:
    _load_builtin()
    return dict(sorted(PERIL_CLASSES.items(), key=lambda kv: kv[1].order))


def check_peril_names(names: Any) -> tuple[str, ...]:
    """``names`` as a tuple of known peril names (duplicates dropped); ``ValueError`` naming the unknown
    ones, or an empty list (a cover of no peril pays nothing, which is never what was meant)."""
    out = tuple(dict.fromkeys(str(n) for n in names))
    known = list(peril_classes())
    bad = [n for n in out if n not in known]
    if bad:
        raise ValueError(f"unknown peril(s) {bad}; known: {known}")
    if not out:
        raise ValueError(f"no peril named; known: {known}")
    return out


__all__ = [
    "AUXILIARY_BLOCKS",
    "PERIL_CLASSES",
    "Peril",
    "PerilLosses",
    "PerilParams",
    "StandState",
    "YearContext",
    "attach_peril_data",
    "check_peril_names",
    "peril_classes",
    "register",
    "validate_peril_parameters",
]
