"""Climate trend: hazard and severity multipliers that change by decade.

The ``perils.climate`` block holds named pathways (``current``, ``warming``, ...). Each maps a peril
name to anchor points ``{calendar_year: multiplier}``; between anchors the multiplier is interpolated
linearly, and held flat outside them. A run picks one pathway; a stress scenario may supply its own.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.perils import AUXILIARY_BLOCKS


class ClimatePathway(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = ""
    source: str = ""
    confidence: str = "assumption"
    hazard: dict[str, dict[int, float]] = Field(default_factory=dict)
    severity: dict[str, dict[int, float]] = Field(default_factory=dict)

    @field_validator("hazard", "severity")
    @classmethod
    def _anchors(cls, v: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
        for peril, anchors in v.items():
            if not anchors:
                raise ValueError(f"{peril}: at least one anchor year is needed")
            for year, m in anchors.items():
                if not 1900 <= int(year) <= 2300:
                    raise ValueError(f"{peril}: anchor year {year} is outside 1900-2300")
                if not 0 <= m <= 100:
                    raise ValueError(f"{peril}: multiplier {m} is outside 0-100")
        return v

    def multiplier(self, kind: str, peril: str, calendar_year: int) -> float:
        anchors = getattr(self, kind).get(peril)
        if not anchors:
            return 1.0
        xs = np.array(sorted(anchors), dtype=float)
        ys = np.array([anchors[int(x)] for x in xs], dtype=float)
        return float(np.interp(calendar_year, xs, ys))


class ClimateParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    default_pathway: str = "current"
    pathways: dict[str, ClimatePathway]

    @field_validator("pathways")
    @classmethod
    def _has_current(cls, v: dict[str, ClimatePathway]) -> dict[str, ClimatePathway]:
        if "current" not in v:
            raise ValueError("a `current` pathway (today's climate) is required")
        return v


AUXILIARY_BLOCKS["climate"] = ClimateParams
