"""Bank credit maths against the published Basel illustrative risk weights and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from scipy.stats import norm

from finance_engine.credit import (
    CREDIT_PARAMETERS_PATH,
    CreditInputError,
    conditional_pd,
    corporate_correlation,
    credit_defaults,
    expected_loss,
    exposure_after_crm,
    foundation_lgd_star,
    irb_capital_requirement,
    irb_risk_weight,
    irb_rwa,
    load_credit_parameters,
    maturity_adjustment_b,
    retail_other_correlation,
    scale_haircut,
)

# Basel II comprehensive version (June 2006), Annex 5 "Illustrative IRB risk weights for UL",
# LGD 45 %, M = 2.5 years (read from the Annex table; risk weights in %, without the 1.06 factor).
# PD % -> (corporate turnover 50, corporate SME turnover 5, other retail)
ANNEX5_LGD45 = {
    0.03: (14.44, 11.30, 4.45),
    0.05: (19.65, 15.39, 6.63),
    0.10: (29.65, 23.30, 11.16),
    0.25: (49.47, 39.01, 21.15),
    0.40: (62.72, 49.49, 28.42),
    0.50: (69.61, 54.91, 32.36),
    0.75: (82.78, 65.14, 40.10),
    1.00: (92.32, 72.40, 45.77),
    1.30: (100.95, 78.77, 50.80),
    1.50: (105.59, 82.11, 53.37),
    2.00: (114.86, 88.55, 57.99),
    2.50: (122.16, 93.43, 60.90),
}
# Basel III framework (CRE99 illustrative table, SAMA rulebook mirror): corporate LGD 40 %, M 2.5.
CRE99_LGD40 = {0.05: (17.47, 13.69), 0.10: (26.36, 20.71), 0.25: (43.97, 34.68), 1.00: (82.06, 64.35)}
TOL_PP = 0.01  # published to 2 decimals (percentage points)
BASEL2_FLOOR = 0.0003


def _hand_rw(pd: float, lgd: float, m: float, *, sales=None, retail=False) -> float:
    """Risk weight written out from CRE31 with scipy.stats.norm (scalar)."""
    k_ = 35.0 if retail else 50.0
    w = (1 - math.exp(-k_ * pd)) / (1 - math.exp(-k_))
    r = (0.03 * w + 0.16 * (1 - w)) if retail else (0.12 * w + 0.24 * (1 - w))
    if sales is not None:
        s = min(max(sales, 5.0), 50.0)
        r -= 0.04 * (1 - (s - 5) / 45)
    k = lgd * (norm.cdf((norm.ppf(pd) + math.sqrt(r) * norm.ppf(0.999)) / math.sqrt(1 - r)) - pd)
    if not retail:
        b = (0.11852 - 0.05478 * math.log(pd)) ** 2
        k *= (1 + (m - 2.5) * b) / (1 - 1.5 * b)
    return 12.5 * k


# ---------------------------------------------------------------------------------------------------
# published figures
# ---------------------------------------------------------------------------------------------------
def test_corporate_risk_weights_match_basel_annex5():
    pds = np.array(list(ANNEX5_LGD45)) / 100
    rw = 100 * irb_risk_weight(pds, 0.45, 2.5, pd_floor=BASEL2_FLOOR)
    np.testing.assert_allclose(rw, [v[0] for v in ANNEX5_LGD45.values()], atol=TOL_PP)
    rw_sme = 100 * irb_risk_weight(pds, 0.45, 2.5, sales_eur_m=5.0, pd_floor=BASEL2_FLOOR)
    np.testing.assert_allclose(rw_sme, [v[1] for v in ANNEX5_LGD45.values()], atol=TOL_PP)


def test_headline_points():
    # corporate, LGD 45 %, M 2.5: PD 0.03 % -> 14.44 %, PD 1 % -> 92.32 % (Annex 5)
    assert 100 * irb_risk_weight(0.0003, 0.45, 2.5, pd_floor=BASEL2_FLOOR) == pytest.approx(14.44, abs=TOL_PP)
    assert 100 * irb_risk_weight(0.01, 0.45, 2.5) == pytest.approx(92.32, abs=TOL_PP)
    # PD 10 %: not in the retrieved table excerpt; the CRE31 formula written out gives about 193.09 %
    assert 100 * irb_risk_weight(0.10, 0.45, 2.5) == pytest.approx(100 * _hand_rw(0.10, 0.45, 2.5), rel=1e-12)
    assert 100 * _hand_rw(0.10, 0.45, 2.5) == pytest.approx(193.09, abs=0.01)


def test_retail_other_risk_weights_match_basel_annex5():
    pds = np.array(list(ANNEX5_LGD45)) / 100
    rw = 100 * irb_risk_weight(pds, 0.45, asset_class="retail_other", pd_floor=BASEL2_FLOOR)
    np.testing.assert_allclose(rw, [v[2] for v in ANNEX5_LGD45.values()], atol=TOL_PP)
    assert retail_other_correlation(0.0) == pytest.approx(0.16) and retail_other_correlation(1.0) == pytest.approx(0.03)


def test_basel3_lgd40_risk_weights_match_cre99():
    pds = np.array(list(CRE99_LGD40)) / 100
    np.testing.assert_allclose(100 * irb_risk_weight(pds, 0.40, 2.5), [v[0] for v in CRE99_LGD40.values()], atol=TOL_PP)
    np.testing.assert_allclose(100 * irb_risk_weight(pds, 0.40, 2.5, sales_eur_m=5.0),
                               [v[1] for v in CRE99_LGD40.values()], atol=TOL_PP)


def test_correlation_and_k_against_independent_reference_values():
    # riskweightedassets (CRAN) golden values: R(1 %) and K(1 %, LGD 40 %, M 2.5)
    assert corporate_correlation(0.01) == pytest.approx(0.192783679165516, abs=1e-14)
    assert irb_capital_requirement(0.01, 0.40, 2.5) == pytest.approx(0.06564750321212547, abs=1e-14)
    assert corporate_correlation(0.0) == pytest.approx(0.24) and corporate_correlation(1.0) == pytest.approx(0.12)


# ---------------------------------------------------------------------------------------------------
# the formula by hand
# ---------------------------------------------------------------------------------------------------
def test_formula_by_hand_on_a_grid():
    rng = np.random.default_rng(0)
    pds = rng.uniform(0.0005, 0.3, 40)
    lgds = rng.uniform(0.1, 0.9, 40)
    ms = rng.uniform(1.0, 5.0, 40)
    sales = rng.uniform(0.0, 80.0, 40)
    got = irb_risk_weight(pds, lgds, ms, sales_eur_m=sales)
    want = [_hand_rw(p, l, m, sales=s) for p, l, m, s in zip(pds, lgds, ms, sales)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got_r = irb_risk_weight(pds, lgds, asset_class="retail_other")
    np.testing.assert_allclose(got_r, [_hand_rw(p, l, 2.5, retail=True) for p, l in zip(pds, lgds)], rtol=1e-12)
    assert maturity_adjustment_b(0.01) == pytest.approx((0.11852 - 0.05478 * math.log(0.01)) ** 2)


def test_floor_maturity_clip_sme_clamp_and_defaults():
    d = credit_defaults()
    assert d.pd_floor == 0.0005
    # PD below the Basel III floor is floored: 0.03 % weighs as 0.05 %
    assert irb_risk_weight(0.0003, 0.45, 2.5) == pytest.approx(irb_risk_weight(0.0005, 0.45, 2.5))
    # maturity clipped to [1, 5]
    assert irb_risk_weight(0.01, 0.45, 0.25) == pytest.approx(irb_risk_weight(0.01, 0.45, 1.0))
    assert irb_risk_weight(0.01, 0.45, 7.0) == pytest.approx(irb_risk_weight(0.01, 0.45, 5.0))
    # default maturity = F-IRB 2.5 years
    assert irb_risk_weight(0.01, 0.45) == pytest.approx(irb_risk_weight(0.01, 0.45, 2.5))
    # SME: sales below 5 -> full -0.04; at or above 50 -> none; NaN -> none
    r = corporate_correlation(0.01)
    np.testing.assert_allclose(corporate_correlation(0.01, [1.0, 5.0, 27.5, 50.0, 80.0, np.nan]),
                               [r - 0.04, r - 0.04, r - 0.02, r, r, r], atol=1e-15)
    # defaulted exposure: K = 0 under F-IRB
    assert irb_capital_requirement(1.0, 0.45, 2.5) == 0.0
    # Basel II 1.06 scaling is optional
    assert irb_risk_weight(0.01, 0.45, 2.5, scaling_factor=1.06) == pytest.approx(1.06 * 0.9232, abs=1e-4)
    np.testing.assert_allclose(irb_rwa([0.01, 0.01], 0.45, [1e6, 2e6], 2.5), [0.92317 * 1e6, 0.92317 * 2e6], rtol=1e-4)


def test_conditional_pd():
    pd_, r = 0.02, corporate_correlation(0.02)
    # at Z = -Phi^-1(0.999) the conditional PD is the worst-case default rate: with M = 1 the maturity
    # factor is exactly 1 and K = LGD (PD(Z) - PD)
    wc = conditional_pd(pd_, r, -norm.ppf(0.999))
    assert irb_capital_requirement(pd_, 0.45, 1.0) == pytest.approx(0.45 * (wc - pd_), rel=1e-12)
    # E_Z[PD(Z)] = PD (Gauss-Hermite quadrature over Z ~ N(0, 1))
    x, w = np.polynomial.hermite_e.hermegauss(80)
    assert np.sum(w * conditional_pd(pd_, r, x)) / math.sqrt(2 * math.pi) == pytest.approx(pd_, rel=1e-6)
    # adverse Z raises PD, Z = 0 with R = 0 returns PD
    assert conditional_pd(pd_, r, -2.0) > pd_ > conditional_pd(pd_, r, 2.0)
    assert conditional_pd(pd_, 0.0, 1.3) == pytest.approx(pd_)


# ---------------------------------------------------------------------------------------------------
# collateral
# ---------------------------------------------------------------------------------------------------
def test_lgd_star_hand_cases():
    # unsecured: LGD_U = 40 %
    res = foundation_lgd_star(100.0, 0.0)
    assert float(res.lgd) == pytest.approx(0.40)
    assert float(res.secured_exposure_cny) == 0.0 and float(res.unsecured_exposure_cny) == 100.0
    # fully collateralised: C (1 - 0.40) = 120 >= 100 -> LGD_S = 25 %
    res = foundation_lgd_star(100.0, 200.0)
    assert float(res.lgd) == pytest.approx(0.25)
    # partial: C = 100 -> E_S = 60, E_U = 40 -> (0.40*40 + 0.25*60)/100 = 0.31
    res = foundation_lgd_star(100.0, 100.0)
    assert float(res.lgd) == pytest.approx(0.31)
    assert float(res.secured_exposure_cny) == pytest.approx(60.0)
    # exposure haircut 10 %: E(1+H_E) = 110, E_S = 60, E_U = 50 -> 35/110
    assert float(foundation_lgd_star(100.0, 100.0, haircut_exposure=0.10).lgd) == pytest.approx(35 / 110)
    # vectorised over paths, custom parameters
    lgd = foundation_lgd_star(np.array([100.0, 100.0, 0.0]), np.array([50.0, 1e9, 10.0]), lgd_unsecured=0.45,
                              lgd_secured=0.20, haircut_collateral=0.5).lgd
    np.testing.assert_allclose(lgd, [(0.45 * 75 + 0.20 * 25) / 100, 0.20, 0.45])


def test_exposure_after_crm_and_haircut_scaling():
    assert float(exposure_after_crm(100.0, 100.0, haircut_collateral=0.4, haircut_fx=0.08)) == pytest.approx(48.0)
    assert float(exposure_after_crm(100.0, 300.0, haircut_collateral=0.4)) == 0.0
    assert float(exposure_after_crm(100.0, 50.0, haircut_collateral=0.2, haircut_exposure=0.1)) == pytest.approx(70.0)
    # 10-day haircut with N_R = 1 and T_M = 10 is unchanged; T_M = 20 (secured lending default) x sqrt(2)
    assert float(scale_haircut(0.15, 1, 10)) == pytest.approx(0.15)
    assert float(scale_haircut(0.15)) == pytest.approx(0.15 * math.sqrt(2.0))
    assert float(scale_haircut(0.15, 5, 20)) == pytest.approx(0.15 * math.sqrt(24 / 10))
    assert credit_defaults().haircut_fx_mismatch == 0.08


def test_expected_loss():
    np.testing.assert_allclose(expected_loss([0.01, 0.05], [0.45, 0.25], [1e6, 2e6]), [4500.0, 25000.0])


# ---------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors():
    with pytest.raises(CreditInputError, match="pd must be <= 1"):
        irb_risk_weight(1.5, 0.45)
    with pytest.raises(CreditInputError, match="lgd must be >= 0"):
        irb_risk_weight(0.01, -0.1)
    with pytest.raises(CreditInputError, match="maturity_years must be > 0"):
        irb_risk_weight(0.01, 0.45, -1.0)
    with pytest.raises(CreditInputError, match="pd must be finite"):
        expected_loss(np.nan, 0.45, 1.0)
    with pytest.raises(CreditInputError, match="ead_cny must be >= 0"):
        expected_loss(0.01, 0.45, -1.0)
    with pytest.raises(CreditInputError, match="asset_class"):
        irb_risk_weight(0.01, 0.45, asset_class="sovereign")
    with pytest.raises(CreditInputError, match="sales_eur_m"):
        corporate_correlation(0.01, -3.0)
    with pytest.raises(CreditInputError, match="correlation must be < 1"):
        conditional_pd(0.01, 1.0, 0.0)
    with pytest.raises(CreditInputError, match="haircut_collateral must be <= 1"):
        foundation_lgd_star(100.0, 50.0, haircut_collateral=1.5)
    with pytest.raises(CreditInputError, match="collateral_value_cny must be >= 0"):
        exposure_after_crm(100.0, -5.0, haircut_collateral=0.4)
    with pytest.raises(CreditInputError, match="remargining_days must be >= 1"):
        scale_haircut(0.1, 0)


def test_credit_parameter_file_validation(tmp_path):
    raw = yaml.safe_load(CREDIT_PARAMETERS_PATH.read_text(encoding="utf-8"))
    assert load_credit_parameters().lgd_other_physical_collateral == 0.25
    bad = dict(raw)
    bad["lgd_senior_unsecured"] = {**raw["lgd_senior_unsecured"], "value": 1.4}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(CreditInputError, match="lgd_senior_unsecured must lie in"):
        load_credit_parameters(p)
    bad = dict(raw)
    bad["pd_floor"] = {**raw["pd_floor"], "confidence": "sure"}
    p.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(CreditInputError, match="pd_floor.confidence"):
        load_credit_parameters(p)
    bad = dict(raw)
    bad["pd_floor"] = {**raw["pd_floor"], "source": "nowhere"}
    p.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(CreditInputError, match="nowhere"):
        load_credit_parameters(p)
