"""Reinsurance quote and capital, subsidy split, rate band and the defaults file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from finance_engine.insurance import (InsuranceInputError, SubsidyShares, check_central_eligibility,
                                      check_rate_adjustment, insurer_capital, layer_quote, load_insurance_defaults,
                                      price_layer, split_premium, subsidy_shares)
from finance_engine.insurance.defaults import DEFAULTS_PATH


@pytest.fixture
def elt():
    # 10 years; year 9 has the 1-in-10 event
    return pd.DataFrame({"year": [0, 2, 4, 6, 9, 9], "event_id": range(6),
                         "loss": [10.0, 20.0, 30.0, 40.0, 100.0, 50.0]})


def test_layer_quote(elt):
    layer = price_layer(elt, 10, 40.0, 50.0)           # per-event: 0,0,0,0,50(100 exhausts),10 -> E = 6
    assert layer.expected_loss == pytest.approx(6.0)
    q = layer_quote(layer, premium=9.0)
    assert q.rate_on_line == pytest.approx(9.0 / 50.0)
    assert q.multiple == pytest.approx(1.5)
    assert q.prob_exhaustion == pytest.approx(0.1)


def test_capital_gross_and_net_by_hand(elt):
    # gross annual: 10, 0, 20, 0, 30, 0, 40, 0, 0, 150; level 0.9 -> VaR = x_(9) = 40
    r = insurer_capital(elt, 10, attachment=40.0, limit=50.0, reinsurance_premium=9.0, level=0.9)
    assert r.gross_mean == pytest.approx(25.0)
    assert (r.gross_var, r.gross_capital) == (40.0, pytest.approx(15.0))
    # net: year 9 keeps 40 + 40 = 80, the rest unchanged -> retained mean 19, VaR_0.9 = 40; the net loss
    # also carries the premium 9 paid every year (no reinstatements): mean 28, VaR 49, capital unchanged
    assert r.net_mean == pytest.approx(19.0 + 9.0)
    assert r.net_var == pytest.approx(40.0 + 9.0) and r.net_capital == pytest.approx(21.0)
    assert r.cost_of_reinsurance == pytest.approx(3.0)
    assert r.ceded_xol_mean == pytest.approx(6.0)
    assert r.upfront_premium == pytest.approx(9.0) and r.expected_reinstatement_premium == pytest.approx(0.0)


def test_net_capital_counts_the_reinstatement_premiums_paid_in_loss_years():
    # 1,000 years, 20 with one event of 30; layer 10 xs 10 with one reinstatement at 100 %.
    # E[X] = 0.02 x 10 = 0.2; first slice Z_1 = 10 in each loss year: P = 0.2 / (1 + 0.02) (Sundt 1991);
    # a loss year pays 20 retained + upfront P + reinstatement P x 10/10; other years pay P.
    n = 1000
    elt = pd.DataFrame({"year": np.arange(20), "event_id": 0, "loss": 30.0})
    p = 0.2 / 1.02
    r = insurer_capital(elt, n, attachment=10.0, limit=10.0, reinstatements=(1, 1.0))
    assert r.upfront_premium == pytest.approx(p) and r.reinsurance_premium == pytest.approx(0.2)
    assert r.net_var == pytest.approx(20.0 + 2 * p)                 # VaR_0.995 = x_(995): a loss year
    assert r.net_mean == pytest.approx(0.02 * (20.0 + 2 * p) + 0.98 * p)
    assert r.net_capital == pytest.approx(19.6 + 0.98 * p)          # 19.792; 19.6 without the reinstatement
    # a loaded premium 0.5 (upfront 0.5 / 1.02): the reinstatement premium scales with it
    loaded = insurer_capital(elt, n, attachment=10.0, limit=10.0, reinstatements=(1, 1.0), reinsurance_premium=0.5)
    assert loaded.net_capital == pytest.approx(19.6 + 0.98 * 0.5 / 1.02)
    assert loaded.cost_of_reinsurance == pytest.approx(0.3)
    # half share: the cedant keeps half the layer and pays half the premiums
    half = insurer_capital(elt, n, attachment=10.0, limit=10.0, reinstatements=(1, 1.0), share=0.5)
    assert half.net_var == pytest.approx(25.0 + 2 * p / 2)
    # free reinstatements change nothing but the layer's cover
    free = insurer_capital(elt, n, attachment=10.0, limit=10.0, reinstatements=(1, 0.0))
    assert free.net_capital == pytest.approx(19.6)


def test_rate_on_line_is_on_the_upfront_premium():
    # A = 0, C = 10, one reinstatement at 100 %: Z = 0, 5, 10, 25 -> ceded 0, 5, 10, 20, E[X] = 8.75;
    # first slice 0, 5, 10, 10 -> P = 8.75 / 1.625; a premium of 2 x 8.75 has upfront 17.5 / 1.625
    elt = pd.DataFrame({"year": [1, 2, 3, 3, 3], "event_id": range(5), "loss": [5.0, 10.0, 10.0, 10.0, 5.0]})
    layer = price_layer(elt, 4, 0.0, 10.0, reinstatements=(1, 1.0))
    q = layer_quote(layer, premium=17.5)
    assert q.upfront_premium == pytest.approx(17.5 / 1.625)
    assert q.rate_on_line == pytest.approx(17.5 / 1.625 / 10.0)
    assert q.multiple == pytest.approx(2.0)                       # the multiple stays on the total
    assert layer.pure_rate_on_line == pytest.approx(8.75 / 1.625 / 10.0)


def test_quota_share_scales_capital():
    rng = np.random.default_rng(2)
    n = 20_000
    counts = rng.poisson(0.8, n)
    year = np.repeat(np.arange(n), counts)
    elt = pd.DataFrame({"year": year, "event_id": np.arange(year.size), "loss": rng.pareto(2.5, year.size) * 10})
    gross = insurer_capital(elt, n)
    net = insurer_capital(elt, n, quota_share_cession=0.4)
    assert gross.level == 0.995 and gross.net_capital == pytest.approx(gross.gross_capital)
    assert net.net_capital == pytest.approx(0.6 * gross.gross_capital, rel=1e-12)
    assert net.ceded_qs_mean == pytest.approx(0.4 * gross.gross_mean)
    # an XoL on top of the quota share cuts the 1-in-200 capital further
    both = insurer_capital(elt, n, quota_share_cession=0.4, attachment=20.0, limit=200.0)
    assert both.net_capital < net.net_capital
    assert both.layer.expected_loss == pytest.approx(both.ceded_xol_mean)


def test_capital_argument_errors(elt):
    with pytest.raises(InsuranceInputError, match="both attachment and limit"):
        insurer_capital(elt, 10, attachment=1.0)
    with pytest.raises(InsuranceInputError, match="quota_share_cession"):
        insurer_capital(elt, 10, quota_share_cession=1.2)
    with pytest.raises(InsuranceInputError, match="n_years"):
        insurer_capital(elt)


# ---- subsidy --------------------------------------------------------------------------------------
def test_hebei_chestnut_split_sums_to_the_premium():
    # 800 CNY/mu at 3.8 per mille = 3.04 CNY/mu; shares 30/25/15/10/20 % (finance_practice.md §2.2)
    s = split_premium(800 * 0.0038 * 1000, "hebei_chestnut_2015")
    assert s.amounts["central"] == pytest.approx(912.0)
    assert s.amounts["provincial"] == pytest.approx(760.0)
    assert s.amounts["city"] == pytest.approx(456.0)
    assert s.amounts["county"] == pytest.approx(304.0)
    assert s.amounts["insured"] == pytest.approx(608.0)
    assert sum(s.amounts.values()) == s.gross_premium
    assert s.public_share == pytest.approx(0.8)


@pytest.mark.parametrize("premium", [0.0, 1.0, 12345.67, 1e9 / 3])
@pytest.mark.parametrize("scheme", ["public_welfare_forest", "commercial_forest", "hebei_chestnut_2015"])
def test_every_scheme_split_sums_exactly(premium, scheme):
    s = split_premium(premium, scheme)
    assert sum(s.amounts.values()) == pytest.approx(premium, rel=1e-15, abs=1e-9)
    assert all(v >= -1e-9 for v in s.amounts.values())


def test_central_subsidy_rules():
    pw = subsidy_shares("public_welfare_forest")
    assert (pw.central, pw.insured) == (0.5, pytest.approx(0.1))
    assert check_central_eligibility(pw)
    # local budgets only 30 % -> no 50 % central share
    assert not check_central_eligibility(subsidy_shares("public_welfare_forest", provincial=0.3, insured=0.2))
    com = subsidy_shares("commercial_forest")
    assert check_central_eligibility(com)
    # province below 25 % (city picks up the rest) -> not eligible
    assert not check_central_eligibility(subsidy_shares("commercial_forest", provincial=0.2, city=0.2))
    with pytest.raises(InsuranceInputError, match="sum to 1"):
        SubsidyShares(0.3, 0.3, 0.3, 0.3, 0.3)
    with pytest.raises(InsuranceInputError, match="unknown subsidy scheme"):
        subsidy_shares("rice")


def test_rate_adjustment_band():
    ok = check_rate_adjustment(0.0075, 0.006)            # factor 1.25: on the edge, allowed
    assert ok.factor == pytest.approx(1.25) and ok.within_band and ok.band == (0.75, 1.25)
    high = check_rate_adjustment(0.0078, 0.006)           # factor 1.3
    assert not high.within_band
    assert check_rate_adjustment(0.0078, 0.006, subsidised=False).within_band
    assert not check_rate_adjustment(0.004, 0.006).within_band   # 0.667 < 0.75
    with pytest.raises(InsuranceInputError, match="base_rate"):
        check_rate_adjustment(0.01, 0.0)


# ---- defaults file --------------------------------------------------------------------------------
def test_defaults_file_has_sources_and_labels():
    d = load_insurance_defaults()
    assert d.return_periods_years == (10, 20, 50, 100, 200, 250)
    assert d.subsidised_rate_band == (0.75, 1.25)
    assert d.central_subsidy_rules["public_welfare_forest"].min_local_share == 0.4
    assert d.central_subsidy_rules["commercial_forest"].local_budgets == ("provincial",)


def test_defaults_file_with_unknown_source_is_rejected(tmp_path: Path):
    raw = yaml.safe_load(DEFAULTS_PATH.read_text(encoding="utf-8"))
    raw["loadings"]["cost_of_capital_rate"]["source"] = "nowhere_2099"
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(InsuranceInputError, match="nowhere_2099"):
        load_insurance_defaults(p)
    raw["loadings"]["cost_of_capital_rate"]["source"] = "finance_doc"
    raw["subsidy_schemes"]["commercial_forest"]["shares"]["insured"]["value"] = 0.3
    p.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(InsuranceInputError, match="sum to"):
        load_insurance_defaults(p)


def test_defaults_file_missing_field_is_named(tmp_path: Path):
    raw = yaml.safe_load(DEFAULTS_PATH.read_text(encoding="utf-8"))
    del raw["risk_measures"]["var_levels"]
    p = tmp_path / "missing.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(InsuranceInputError, match="var_levels"):
        load_insurance_defaults(p)
