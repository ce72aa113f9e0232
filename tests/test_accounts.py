"""Five-level carbon accounts: every level sums exactly from the villages up."""

import numpy as np
import pytest

from finance_engine.accounts import carbon_accounts
from models.portfolio import LEVELS, validate_frame
from tests.conftest import make_frame


@pytest.fixture(scope="module")
def accounts(params):
    pf = validate_frame(make_frame(150, seed=4), params)
    return pf, carbon_accounts(pf, params, sink_paths=64, seed=1)


KG_COLUMNS = ["area_ha_kg", "stock_bef_tco2e_kg", "stock_fang_tco2e_kg", "potential_sink_tco2e_per_yr_kg",
              "expected_sink_tco2e_per_yr_kg", "expected_loss_tco2e_per_yr_kg"]


def test_every_level_is_the_exact_sum_of_the_level_below(accounts):
    _, acc = accounts
    t = acc.table
    chain = ["portfolio", *LEVELS]
    for parent, child in zip(chain[:-1], chain[1:]):
        keys = list(LEVELS[: chain.index(parent)])
        p = t[t.level == parent]
        c = t[t.level == child]
        if keys:
            summed = c.groupby(keys)[KG_COLUMNS].sum().sort_index()
            got = p.set_index(keys)[KG_COLUMNS].sort_index()
            assert list(summed.index) == list(got.index)
        else:
            summed = c[KG_COLUMNS].sum().to_frame().T
            got = p[KG_COLUMNS]
        np.testing.assert_array_equal(summed.to_numpy(), got.to_numpy())
    assert t.parcels[t.level == "portfolio"].iloc[0] == 150


# Table 1.2 of the reference sheet (NDRC provincial inventory guide / AR-CM-001 defaults): wood density
# (t/m3), BEF, root:shoot, carbon fraction; evergreen broadleaf takes the mixed-broadleaf (阔叶混) row
PUBLISHED_BEF_FACTORS = {"chinese_fir": (0.307, 1.634, 0.246, 0.520), "masson_pine": (0.380, 1.472, 0.187, 0.460),
                         "evergreen_broadleaf": (0.482, 1.514, 0.262, 0.490)}


def test_stock_matches_published_conversion_factors(params):
    """Measured volumes and bamboo carbon through the published factors: V D BEF (1 + R) CF x 44/12 per ha."""
    frame = make_frame(60, seed=11)
    rng = np.random.default_rng(11)
    bamboo = frame.species_group == "moso_bamboo"
    frame["volume_m3_per_ha"] = np.where(bamboo, np.nan, rng.uniform(20.0, 250.0, len(frame)))
    frame["bamboo_carbon_tc_per_ha"] = np.where(bamboo, rng.uniform(20.0, 60.0, len(frame)), np.nan)
    pf = validate_frame(frame, params)
    acc = carbon_accounts(pf, params, sink_paths=0)
    per_ha = np.array([np.prod(PUBLISHED_BEF_FACTORS[sp][:2]) * (1 + PUBLISHED_BEF_FACTORS[sp][2])
                       * PUBLISHED_BEF_FACTORS[sp][3] * v if sp in PUBLISHED_BEF_FACTORS else c
                       for sp, v, c in zip(frame.species_group, frame.volume_m3_per_ha, frame.bamboo_carbon_tc_per_ha)])
    assert bamboo.any() and (~bamboo).any()
    expected = (per_ha * frame.area_ha).sum() * 44 / 12
    # kg rounding per parcel, summed over 60 parcels: well inside 1e-6 relative
    assert acc.level("portfolio").stock_bef_tco2e.iloc[0] == pytest.approx(expected, rel=1e-6)


def test_expected_sink_is_below_potential_and_has_error_bars(accounts):
    _, acc = accounts
    tot = acc.level("portfolio").iloc[0]
    assert tot.expected_sink_tco2e_per_yr_mc_se > 0
    assert tot.expected_sink_tco2e_per_yr < tot.potential_sink_tco2e_per_yr + 4 * tot.expected_sink_tco2e_per_yr_mc_se
    county = acc.level("county")
    assert county.expected_sink_tco2e_per_yr_mc_se.notna().all()
    # the spread of the parameters is its own line, beside the Monte Carlo error, at every level
    for lv in ("portfolio", "county", "village"):
        t = acc.level(lv)
        for col in ("expected_sink_tco2e_per_yr_parameter_sd", "expected_loss_tco2e_per_yr_parameter_sd"):
            assert t[col].notna().all() and (t[col] >= 0).all()
    assert tot.expected_sink_tco2e_per_yr_parameter_sd > 0  # growth curves and peril rates are uncertain
    assert acc.units["*_parameter_sd"].startswith("sd from the uncertain")


def test_tree_nests_all_five_levels(accounts):
    _, acc = accounts
    tree = acc.tree()
    node, depth = tree, 0
    while node["children"]:
        assert node["stock_bef_tco2e"] == pytest.approx(sum(c["stock_bef_tco2e"] for c in node["children"]), abs=1e-6)
        node = node["children"][0]
        depth += 1
    assert depth == 5


def test_bad_level(accounts):
    with pytest.raises(ValueError, match="unknown level"):
        accounts[1].level("district")


def test_progress_is_observation_only(params):
    """A progress callback sees the sink run's chunks rise to the last; the numbers do not change (nor with
    the chunk size)."""
    pf = validate_frame(make_frame(30, seed=2), params)
    seen = []
    with_progress = carbon_accounts(pf, params, sink_paths=160, seed=3, chunk_paths=32, progress=seen.append)
    # every chunk reported in turn; the summary's parts then report the last chunk still to come (a cancel raised
    # from the callback stops the summary too), and only the result reports it done
    counts = [(p.chunks_done, p.chunks_total) for p in seen]
    assert counts == sorted(counts) and sorted(set(counts)) == [(k, 5) for k in range(6)]
    assert counts[-1] == (5, 5) and counts.count((5, 5)) == 1
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and seen[-1].fraction == 1.0 and seen[-1].eta_s == 0.0
    assert with_progress.table.equals(carbon_accounts(pf, params, sink_paths=160, seed=3).table)
