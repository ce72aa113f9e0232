"""The areas a stress scenario's forced events name, checked against the portfolio and the model's region.

A forced event names counties (``counties``; pine wilt also ``townships``). The weather perils match a county
name exactly against the portfolio's ``county`` column (:func:`models.perils._weather.forced_counties`); pine
wilt matches a name exactly, as the end of a ``county/township`` path, or else as the start of a label
(``景宁`` for ``景宁畲族自治县``), against the portfolio's parcels and the region's landscape cells
(:func:`models.perils.pine_wilt._match_names`). A name that matches nothing hits nothing, and the stress test
then shows a zero effect.

That is right for a library scenario naming a county the user's portfolio does not hold (a scenario written for
the whole city may run on part of it), but a misspelt name (``龙泉`` for ``龙泉市`` in an ice storm) also hits
nothing. :func:`forced_area_notes` says which names hit nothing in a portfolio, and of those which are no county
(township) of the model's region at all, with the closest name of the region. The region's counties and
townships are the labels of the pine wilt landscape (:mod:`models.perils.pine_wilt_landscape`), the one
region-wide list of areas the parameter file holds; without a landscape only the portfolio's names are known.
:func:`scenario_area_warnings` checks a scenario against the region alone (``carbon-risk validate --kind
scenario``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.perils.pine_wilt import _match_names

#: the forced-event keys that name areas, and what they name
AREA_KEYS = {"counties": "county", "townships": "township"}


@dataclass(frozen=True)
class Areas:
    """County and township labels of a set of parcels or cells, and their ``county/township`` paths."""

    counties: np.ndarray
    townships: np.ndarray
    paths: np.ndarray
    what: str

    @classmethod
    def of(cls, county, township, what: str) -> "Areas":
        c = np.asarray(county, dtype=str)
        t = np.asarray(township, dtype=str)
        keep = c != ""
        c, t = c[keep], t[keep]
        pairs = sorted(set(zip(c.tolist(), t.tolist())))
        c = np.array([p[0] for p in pairs], dtype=str)
        t = np.array([p[1] for p in pairs], dtype=str)
        return cls(c, t, np.char.add(np.char.add(c, "/"), t), what)

    def matches(self, key: str, name: str, peril: str) -> bool:
        """Whether ``name`` under ``key`` names any of these areas, by the peril's rule (module docstring)."""
        if key == "counties":
            if peril != "pine_wilt":
                return bool(np.any(self.counties == name))
            return bool(_match_names(self.counties, name).any()) if self.counties.size else False
        return bool(_match_names(self.townships, name, self.paths).any()) if self.townships.size else False

    def names(self, key: str) -> list[str]:
        return sorted(set((self.counties if key == "counties" else self.townships).tolist()))


def region_areas(params) -> Areas | None:
    """The counties and townships of the model's region: the pine wilt landscape's cell labels (None where the
    parameter file has no landscape)."""
    block = params.perils.get("pine_wilt") if params is not None else None
    land = getattr(block, "landscape_data", None) if block is not None else None
    if land is None:
        return None
    return Areas.of(land.county, land.township, "region")


def portfolio_areas(portfolio) -> Areas:
    f = portfolio.frame
    return Areas.of(f["county"].to_numpy(str), f["township"].to_numpy(str), "portfolio")


def closest_name(name: str, candidates: list[str]) -> str | None:
    """The candidate ``name`` most likely misspells: the one candidate it starts (or that starts it), else the
    closest by :func:`difflib.get_close_matches` (ratio at least 0.4); None when nothing is close."""
    pref = [c for c in candidates if c.startswith(name) or name.startswith(c)]
    if len(pref) == 1:
        return pref[0]
    close = difflib.get_close_matches(name, pref or candidates, n=1, cutoff=0.4)
    return close[0] if close else None


def _event_names(ev: dict[str, Any]):
    for key in AREA_KEYS:
        for raw in ev.get(key) or []:
            if isinstance(raw, str) and raw.strip():
                yield key, raw.strip()


def _unknown_text(key: str, name: str, known: Areas) -> str:
    hint = closest_name(name, known.names(key))
    return f"{name!r}" + (f" (did you mean {hint!r}?)" if hint else "")


def forced_area_notes(scenario, portfolio, params, horizon: int | None = None) -> list[str]:
    """Notes on the areas ``scenario``'s forced events name that hit no parcel of ``portfolio``.

    Per event (those within the run's ``horizon`` simulated years: :func:`finance_engine.stress.run.timing_notes`
    speaks of the later ones): the names of the region's areas the portfolio does not hold (zero effect here is
    right; a pine wilt outbreak there starts in the region's landscape and reaches the portfolio only by
    spreading), and the names that are no area of the region at all (a misspelling), each with the region's
    closest name. Without a landscape the portfolio's names are the only ones known, and a name not among them
    is said to match no area of the portfolio, with the portfolio's closest name.
    """
    own = portfolio_areas(portfolio)
    region = region_areas(params)
    known = region or own
    out = []
    for y0, peril, ev in scenario.forced_events:
        if horizon is not None and y0 >= horizon:
            continue
        where = f"{scenario.name}: forced {peril} in year {y0 + 1}"
        elsewhere, unknown = [], []
        for key, name in _event_names(ev):
            if own.matches(key, name, peril):
                continue
            if region is not None and region.matches(key, name, peril):
                elsewhere.append((key, name))
            else:
                unknown.append((key, name))
        if elsewhere:
            names = ", ".join(n for _, n in elsewhere)
            what = "areas" if len({k for k, _ in elsewhere}) > 1 else (
                "counties" if elsewhere[0][0] == "counties" else "townships")
            if peril == "pine_wilt":
                out.append(f"{where} names {what} of the region that hold no parcel of this portfolio ({names}): "
                           "the outbreak starts in the region's landscape there and reaches the portfolio only by "
                           "spreading")
            else:
                out.append(f"{where} names {what} of the region that hold no parcel of this portfolio ({names}): "
                           "it hit nothing here")
        if unknown:
            names = ", ".join(f"{AREA_KEYS[k]} {_unknown_text(k, n, known)}" for k, n in unknown)
            verb = "are" if len(unknown) > 1 else "is"
            scope = (f"{verb} not in the model's region" if region is not None
                     else f"{verb} not in the portfolio (the parameter file lists no region's areas)")
            rule = ("" if peril == "pine_wilt" else
                    f" ({peril} matches a county's full name exactly)")
            it = "they hit nothing" if len(unknown) > 1 else "it hit nothing"
            out.append(f"{where}: {names} {scope}, so {it}: check the spelling{rule}")
    return out


def scenario_area_warnings(scenario, params) -> list[str]:
    """The names ``scenario``'s forced events give that are no county or township of the model's region (by each
    peril's rule), each with the region's closest name; empty where the parameter file has no landscape (no
    region-wide list of areas to check against)."""
    region = region_areas(params)
    if region is None:
        return []
    out = []
    for i, (y0, peril, ev) in enumerate(scenario.forced_events):
        for key, name in _event_names(ev):
            if not region.matches(key, name, peril):
                out.append(f"forced_events.{i} ({peril}, year {y0 + 1}): {AREA_KEYS[key]} "
                           f"{_unknown_text(key, name, region)} is not in the model's region: it would hit nothing")
    return out


__all__ = ["AREA_KEYS", "Areas", "closest_name", "forced_area_notes", "portfolio_areas", "region_areas",
           "scenario_area_warnings"]
