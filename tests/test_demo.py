"""The synthetic Lishui demo portfolio: determinism, validity, coverage and composition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.demo import (
    DEMO_N_PARCELS,
    DEMO_SEED,
    DEMO_SETTINGS_PATH,
    DemoSettingsError,
    demo_portfolio_path,
    generate_demo_portfolio,
    load_demo_settings,
    write_demo_csv,
)
from models.portfolio import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, load_portfolio, validate_frame

LISHUI_COUNTIES = {"莲都区", "龙泉市", "青田县", "云和县", "庆元县", "缙云县", "遂昌县", "松阳县", "景宁畲族自治县"}
CONIFER = {"chinese_fir", "masson_pine"}
BROADLEAF_MIXED = {"mixed_conifer_broadleaf", "evergreen_broadleaf", "hard_broadleaf", "oaks"}


@pytest.fixture(scope="module")
def demo(params):
    return generate_demo_portfolio(DEMO_N_PARCELS, DEMO_SEED, params)


def test_columns_exactly_the_portfolio_columns(demo):
    assert tuple(demo.columns) == (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    assert demo["parcel_id"].iloc[0] == "LS-000001"
    assert demo["parcel_id"].iloc[-1] == "LS-005000"
    assert demo["parcel_id"].is_unique


def test_same_seed_same_table_other_seed_different(params, demo):
    again = generate_demo_portfolio(DEMO_N_PARCELS, DEMO_SEED, params)
    pd.testing.assert_frame_equal(demo, again)
    other = generate_demo_portfolio(DEMO_N_PARCELS, DEMO_SEED + 1, params)
    assert not demo.drop(columns="parcel_id").equals(other.drop(columns="parcel_id"))
    assert (demo["species_group"] != other["species_group"]).mean() > 0.3


def test_validates_cleanly_and_covers_the_nine_counties(params, demo):
    pf = validate_frame(demo, params, source="demo")
    assert len(pf) == DEMO_N_PARCELS
    assert set(demo["county"]) == LISHUI_COUNTIES
    assert set(demo["province"]) == {"浙江省"} and set(demo["city"]) == {"丽水市"}
    # Longquan has the largest forest area and stock (domain_parameters.md §3): most parcels
    counts = demo["county"].value_counts()
    assert counts.idxmax() == "龙泉市"
    # synthetic township and village names say so
    assert demo["township"].str.contains("合成镇").all() and demo["village"].str.contains("合成镇").all()
    assert (demo["township"].str.split("-").str[0] == demo["county"]).all()


@pytest.mark.parametrize("weight", ["count", "area"])
def test_species_shares_in_the_stated_ranges(demo, weight):
    w = demo["area_ha"] if weight == "area" else pd.Series(1.0, index=demo.index)
    share = w.groupby(demo["species_group"]).sum() / w.sum()
    assert 0.45 <= share[list(CONIFER)].sum() <= 0.55
    assert 0.30 <= share[list(BROADLEAF_MIXED)].sum() <= 0.40
    assert 0.08 <= share["moso_bamboo"] <= 0.12


def test_locations_elevations_and_ages_are_plausible(params, demo):
    # inside Lishui's bounding box (about 27.2-28.9 N, 118.6-120.7 E)
    assert demo["latitude"].between(27.1, 29.0).all() and demo["longitude"].between(118.5, 120.8).all()
    elev = demo["elevation_m"]
    assert elev.between(200, 1200).mean() > 0.75  # most parcels in 200-1,200 m
    assert 0.03 < (elev > 1000).mean() < 0.35  # some above the pine wilt limit of 1,000 m
    max_age = params.tables.max_age_years[demo["species_group"].map(params.species_index).to_numpy()]
    assert (demo["age_years"] >= 1).all() and (demo["age_years"] <= max_age).all()
    fir = demo.loc[demo["species_group"] == "chinese_fir", "age_years"]
    assert 0.45 < (fir <= 20).mean() < 0.8  # young and middle-aged plantations dominate
    assert set(demo["site_class"]) == {"I", "II", "III", "IV", "V"}
    assert set(demo["origin"]) == {"plantation", "natural"}


def test_measured_stock_only_for_a_minority_and_the_right_kind(params, demo):
    bamboo = demo["species_group"] == "moso_bamboo"
    vol = demo["volume_m3_per_ha"]
    assert 0.05 < vol[~bamboo].notna().mean() < 0.25
    assert vol[bamboo].isna().all()
    assert demo.loc[~bamboo, "bamboo_carbon_tc_per_ha"].isna().all()
    assert demo.loc[bamboo, "bamboo_carbon_tc_per_ha"].notna().any()
    assert (vol.dropna() >= 0).all()


def test_projects_are_clusters_of_townships(demo):
    in_project = demo["project_id"] != ""
    assert 0.02 < in_project.mean() < 0.3
    by_project = demo[in_project].groupby("project_id")["township"].nunique()
    assert (by_project == 1).all()  # one township per project
    assert demo[in_project].groupby("project_id")["county"].nunique().max() == 1


def test_shipped_file_is_the_seed_2026_output(params, demo, tmp_path):
    shipped = demo_portfolio_path()
    assert shipped.name == "demo_portfolio.csv" and shipped.exists()
    fresh = write_demo_csv(demo, tmp_path / "demo.csv")
    assert fresh.read_bytes() == shipped.read_bytes()
    shipped.read_bytes().decode("utf-8")  # UTF-8 without errors
    assert len(load_portfolio(shipped, params)) == DEMO_N_PARCELS


def test_bad_arguments(params):
    with pytest.raises(ValueError, match="n_parcels"):
        generate_demo_portfolio(0, 1, params)


def test_settings_weights_and_bad_shares(tmp_path):
    s = load_demo_settings()
    assert len(s.county_names) == 9
    # forest area weights: Longquan largest (stock 14.56 M m3, coverage 84.2 %), Liandu 102,600 ha read
    assert s.county_names[int(np.argmax(s.forest_weight))] == "龙泉市"
    liandu = s.county_names.index("莲都区")
    assert s.forest_weight[liandu] == pytest.approx(102_600 / 1_393_846, rel=1e-6)
    text = DEMO_SETTINGS_PATH.read_text(encoding="utf-8").replace("{share: 0.33, ages: fir", "{share: 0.53, ages: fir")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(DemoSettingsError, match="species shares: shares must be non-negative and sum to 1"):
        load_demo_settings(bad)
