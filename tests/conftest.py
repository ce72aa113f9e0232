"""Shared fixtures: the Lishui parameter set and small portfolios built in code."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from models.parameters import load_parameters
from models.portfolio import validate_frame


def pytest_configure(config):
    # no footprint store on disk unless a test names one: tests count computed footprints and must not
    # write to the user's cache; the servers they start inherit this. (In a hook, so that importing
    # make_frame from here, as benchmarks/load_api.py does, changes nothing.)
    os.environ["CRE_FOOTPRINT_STORE"] = "off"


@pytest.fixture(scope="session")
def params():
    return load_parameters("lishui")


def make_frame(n: int = 200, seed: int = 0, species=None, counties=None) -> pd.DataFrame:
    """A small synthetic portfolio table (valid), for unit tests."""
    rng = np.random.default_rng(seed)
    species = species or ["chinese_fir", "masson_pine", "evergreen_broadleaf", "moso_bamboo"]
    counties = counties or ["莲都区", "龙泉市", "遂昌县"]
    return pd.DataFrame({
        "parcel_id": [f"T{i:05d}" for i in range(n)],
        "province": "浙江省",
        "city": "丽水市",
        "county": rng.choice(counties, n),
        "township": rng.choice(["甲镇", "乙乡"], n),
        "village": rng.choice(["一村", "二村", "三村"], n),
        "latitude": rng.uniform(27.8, 28.6, n),
        "longitude": rng.uniform(119.0, 120.2, n),
        "area_ha": rng.uniform(1.0, 30.0, n),
        "species_group": rng.choice(species, n),
        "age_years": rng.integers(3, 45, n),
        "site_class": rng.choice(["I", "II", "III", "IV", "V"], n),
        "elevation_m": rng.uniform(100, 1200, n),
    })


@pytest.fixture(scope="module")
def portfolio_csv(tmp_path_factory):
    """A 40-parcel portfolio file with one 20-parcel project (``PRJ-A``), for the CLI tests."""
    df = make_frame(40, seed=12)
    df["project_id"] = np.where(np.arange(40) < 20, "PRJ-A", "")
    p = tmp_path_factory.mktemp("cli") / "parcels.csv"
    df.to_csv(p, index=False)
    return str(p)


@pytest.fixture
def small_frame():
    return make_frame()


@pytest.fixture
def small_portfolio(params):
    return validate_frame(make_frame(), params, source="small")
