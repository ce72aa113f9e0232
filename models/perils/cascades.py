"""Cascades in time: damage from one peril changes the next one's odds.

Wind or ice breakage leaves dead fuel and weakened pines. For ``years`` years after a parcel loses at
least ``damage_threshold`` of its carbon to a *breakage* peril (typhoon, ice storm), its burn
probability is multiplied by ``fire_multiplier`` and its pine wilt infection and mortality by
``pest_multiplier``. The window opens the year after the breakage (every peril of the storm's own year
sees the stand as that year began) and closes after ``years`` years; a new breakage restarts it. A
burned stand regrows from young (handled by the stand simulator). The block lives under
``perils.cascades`` in the parameter file; :mod:`models.dynamics` applies it, keeping per (path,
parcel) only the window's last year (``StandState.weakened_until``, 2 bytes a pair).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from models.parameters.schema import Sourced
from models.perils import AUXILIARY_BLOCKS


class CascadeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    breakage_perils: list[str] = Field(default_factory=lambda: ["typhoon", "ice_storm"])
    damage_threshold: Sourced
    years: Sourced
    fire_multiplier: Sourced
    pest_multiplier: Sourced


AUXILIARY_BLOCKS["cascades"] = CascadeParams
