"""Carbon accounting against published figures (shared/reference/domain_parameters.md, validation targets 1)."""

import numpy as np
import pytest

from models.carbon import CreditingRules, carbon_factors, co2e, fang_carbon_tc_per_ha, tree_carbon_tc_per_ha


def _code(params, sid):
    return np.array([params.species_index[sid]])


def test_chinese_fir_150_m3_bef_matches_ccer_default(params):
    # 150 x 0.307 x 1.634 x 1.246 x 0.52 = 48.8 tC/ha = 179 tCO2e/ha (NDRC / AR-CM-001 defaults)
    c = carbon_factors(params, _code(params, "chinese_fir"), "bef").tc_per_ha(np.array([150.0]))[0]
    assert c == pytest.approx(48.8, abs=0.05)
    assert float(co2e(c, params)) == pytest.approx(179.0, abs=0.5)


def test_chinese_fir_150_m3_fang_about_41(params):
    # Fang et al. 2001: B = 0.3999 V + 22.541 -> 82.5 Mg/ha -> about 41 tC/ha
    c = carbon_factors(params, _code(params, "chinese_fir"), "fang").tc_per_ha(np.array([150.0]))[0]
    assert c == pytest.approx(41.3, abs=0.1)
    # the two methods differ by about 15-20 % (the structural band the reference quotes)
    bef = carbon_factors(params, _code(params, "chinese_fir"), "bef").tc_per_ha(np.array([150.0]))[0]
    assert 0.15 <= (bef - c) / bef <= 0.20


def test_masson_pine_100_m3_bef(params):
    # 100 x 0.38 x 1.472 x 1.187 x 0.46 = 30.5 tC/ha
    c = carbon_factors(params, _code(params, "masson_pine"), "bef").tc_per_ha(np.array([100.0]))[0]
    assert c == pytest.approx(30.5, abs=0.05)


def test_formula_helpers_agree_with_factors(params):
    sp = params.species("chinese_fir")
    direct = tree_carbon_tc_per_ha(150.0, sp.wood_density_t_per_m3.value, sp.bef.value,
                                   sp.root_shoot_ratio.value, sp.carbon_fraction.value)
    assert direct == pytest.approx(48.753, abs=1e-3)
    assert fang_carbon_tc_per_ha(150.0, 0.3999, 22.541) == pytest.approx(41.263, abs=1e-3)


def test_fang_ramp_gives_zero_carbon_on_bare_land(params):
    f = carbon_factors(params, np.repeat(_code(params, "chinese_fir"), 3), "fang")
    c = f.tc_per_ha(np.array([0.0, 15.0, 30.0]))
    assert c[0] == 0.0
    assert c[1] == pytest.approx(c[2] / 2)


def test_species_without_fang_fall_back_to_bef(params):
    code = _code(params, "hard_broadleaf")
    assert params.species("hard_broadleaf").fang is None
    bef = carbon_factors(params, code, "bef").tc_per_ha(np.array([120.0]))
    fang = carbon_factors(params, code, "fang").tc_per_ha(np.array([120.0]))
    assert bef == pytest.approx(fang)


def test_evergreen_broadleaf_uses_the_mixed_broadleaf_factors_under_both_methods(params):
    # domain_parameters.md §1.4: Fang's evergreen/other broadleaf coefficients are memory (low); "use the
    # Table 1.2 阔叶混 BCEF instead": 100 m3/ha x 0.482 x 1.514 x 1.262 x 0.490 = 45.1 tC/ha
    code = _code(params, "evergreen_broadleaf")
    assert params.species("evergreen_broadleaf").fang is None
    for method in ("bef", "fang"):
        assert carbon_factors(params, code, method).tc_per_ha(np.array([100.0]))[0] == pytest.approx(45.13, abs=0.01)


@pytest.mark.parametrize("name,factors", [
    # domain_parameters.md Table 1.2 rows (D, BEF, R, CF)
    ("湿地松", (0.424, 1.614, 0.264, 0.511)),
    ("木荷", (0.598, 1.894, 0.258, 0.497)),
    ("枫香", (0.598, 1.765, 0.398, 0.497)),
])
def test_species_with_their_own_reference_row_use_it(params, name, factors):
    # slash pine, Schima and Liquidambar have their own rows in the reference table; entered by their Chinese
    # names they get those factors, not their group's (V D BEF (1 + R) CF at 100 m3/ha)
    sid = params.species_aliases[name]
    d, bef, r, cf = factors
    c = carbon_factors(params, _code(params, sid), "bef").tc_per_ha(np.array([100.0]))[0]
    assert c == pytest.approx(100 * d * bef * (1 + r) * cf, rel=1e-12)
    assert carbon_factors(params, _code(params, sid), "fang").tc_per_ha(np.array([100.0]))[0] == pytest.approx(c)


def test_bamboo_has_no_volume_conversion(params):
    code = _code(params, "moso_bamboo")
    assert carbon_factors(params, code, "bef").tc_per_ha(np.array([100.0]))[0] == 0.0


def test_unknown_method_rejected(params):
    with pytest.raises(ValueError, match="unknown carbon method"):
        carbon_factors(params, _code(params, "oaks"), "magic")


class TestCrediting:
    rules = CreditingRules(monitoring_period_years=5, baseline_removal_fraction=0.1, leakage_fraction=0.05,
                           buffer_fraction=0.2)

    def test_issue_removals_minus_baseline_leakage_buffer(self):
        issued, buffer, deficit = self.rules.issue(np.array([1000.0]), np.array([0.0]))
        # 1000 - 100 - 50 = 850 creditable; 20 % buffer
        assert issued[0] == pytest.approx(680.0)
        assert buffer[0] == pytest.approx(170.0)
        assert deficit[0] == 0.0

    def test_reversal_issues_nothing_and_is_carried(self):
        issued, buffer, deficit = self.rules.issue(np.array([-300.0]), np.array([0.0]))
        assert issued[0] == 0.0 and buffer[0] == 0.0 and deficit[0] == pytest.approx(300.0)
        issued, buffer, deficit = self.rules.issue(np.array([1000.0]), deficit)
        assert issued[0] == pytest.approx((850.0 - 300.0) * 0.8)
        assert deficit[0] == 0.0

    def test_issuance_years(self):
        assert list(np.flatnonzero(self.rules.is_issuance_year(np.arange(12)))) == [4, 9]

    def test_accrued_position_is_the_next_verifications_starting_point(self):
        """Every 2 years: gains since the last verification less a carried reversal; a verification year
        ends at its carried deficit (its creditable gain was issued)."""
        rules = CreditingRules(monitoring_period_years=2, baseline_removal_fraction=0.0, leakage_fraction=0.0,
                               buffer_fraction=0.2)
        stock = np.array([10.0, 20.0, 15.0, 12.0, 30.0, 31.0])[:, None]
        # yr 1: +10 | yr 2 verified (+20 issued) | yr 3: -5 | yr 4 verified: -8 carried | yr 5: +18 - 8
        # | yr 6 verified: +19 - 8 = 11 creditable, nothing carried
        expected = [0.0, 10.0, 0.0, -5.0, -8.0, 10.0, 0.0]
        np.testing.assert_allclose(rules.accrued_position(stock, 0.0)[:, 0], expected)
        # with baseline and leakage shares the carried deficit is the net shortfall (issue's)
        rules = CreditingRules(monitoring_period_years=2, baseline_removal_fraction=0.1, leakage_fraction=0.1,
                               buffer_fraction=0.2)
        pos = rules.accrued_position(np.array([[5.0], [-4.0], [6.0], [20.0]]), 0.0)[:, 0]
        # yr 2 verified: -4 from the start: deficit 4; yr 4 verified: +24 -> 24 - 0.2 x 24 - 4 = 15.2 issued
        np.testing.assert_allclose(pos, [0.0, 5.0, -4.0, 6.0, 0.0])

    def test_verifications_issue_only_within_the_crediting_period(self, params):
        """MEE 2023 CCER rules: a forestry project is credited for 20-40 years (Lishui's file: the 40-year maximum)."""
        rules = CreditingRules.from_parameters(params)
        assert rules.crediting_period_years == 40 and rules.monitoring_period_years == 5
        assert list(np.flatnonzero(rules.is_issuance_year(np.arange(60))) + 1) == [5, 10, 15, 20, 25, 30, 35, 40]
        short = CreditingRules.from_parameters(params, crediting_period_years=20)
        assert list(np.flatnonzero(short.is_issuance_year(np.arange(60))) + 1) == [5, 10, 15, 20]
        with pytest.raises(ValueError, match="crediting_period_years"):
            CreditingRules.from_parameters(params, crediting_period_years=3)
        with pytest.raises(ValueError, match="whole number"):
            CreditingRules.from_parameters(params, crediting_period_years=25.7)

    def test_a_long_run_issues_nothing_after_the_crediting_period(self, params):
        from finance_engine.simulation import simulate
        from models.dynamics import SimulationSwitches
        from models.portfolio import validate_frame
        from tests.conftest import make_frame

        pf = validate_frame(make_frame(6, seed=3, species=["chinese_fir"]).assign(age_years=5, project_id="P"), params)
        sw = SimulationSwitches(parameter_uncertainty=False, growth_shocks=False, parcel_noise=False, perils=())
        res = simulate(pf, params, years=50, paths=4, seed=1, switches=sw, levels=("portfolio",))
        by = res.summary[(res.summary.metric == "credits_issued_tco2e")].set_index("year")["mean"]
        assert (by.loc[by.index < 40] > 0).sum() == 8 and (by.loc[by.index >= 40] == 0).all()
        # the stock keeps growing after it: the credits stop, not the sink
        sink = res.summary[(res.summary.metric == "sink_tco2e")].set_index("year")["mean"]
        assert (sink.loc[sink.index >= 40] > 0).all()

    def test_a_project_credited_before_the_run_keeps_its_phase_and_has_fewer_years_left(self, params):
        """A project crediting since 2019 (5-year periods, 40 years: to the end of 2058), in a run from 2026:
        7 years are past, so its verifications fall at the ends of 2028, 2033, ... 2058 (run years 3, 8, ... 33),
        and none after."""
        rules = CreditingRules.from_parameters(params, start_year=2026, crediting_start_year=2019)
        assert rules.years_credited_before_start == 7
        years = np.flatnonzero(rules.is_issuance_year(np.arange(60))) + 1
        assert list(years) == [3, 8, 13, 18, 23, 28, 33]
        assert [2026 + y - 1 for y in years][-1] == 2019 + 40 - 1 and rules.first_issuance_year() == 3
        # the same from the engine's override by name, and with a registered 20-year period (ends 2038)
        short = CreditingRules.from_parameters(params, start_year=2026, crediting_start_year=2019,
                                               crediting_period_years=20)
        assert list(np.flatnonzero(short.is_issuance_year(np.arange(60))) + 1) == [3, 8, 13]
        # a period that is not a whole number of monitoring periods is verified to its end: 23 years with 21
        # past verifies at the end of its 23rd year (run year 2), the shorter last period credited too
        tail = CreditingRules(5, 0.0, 0.0, 0.15, crediting_period_years=23, years_credited_before_start=21)
        assert tail.first_issuance_year() == 2 and list(np.flatnonzero(tail.is_issuance_year(np.arange(60))) + 1) == [2]
        odd = CreditingRules.from_parameters(params, crediting_period_years=22)
        assert list(np.flatnonzero(odd.is_issuance_year(np.arange(60))) + 1) == [5, 10, 15, 20, 22]
        with pytest.raises(ValueError, match="not both"):
            CreditingRules.from_parameters(params, start_year=2026, crediting_start_year=2020,
                                           years_credited_before_start=2)
        assert CreditingRules.from_parameters(params).first_issuance_year() == 5
        # starting in the run's year is the default
        assert CreditingRules.from_parameters(params, start_year=2026, crediting_start_year=2026) == \
            CreditingRules.from_parameters(params)
        # a later start: verifications a monitoring period after it, none before; the stock at its start counts
        later = CreditingRules.from_parameters(params, start_year=2026, crediting_start_year=2028)
        assert later.years_credited_before_start == -2 and later.first_issuance_year() == 7
        assert list(np.flatnonzero(later.is_issuance_year(np.arange(60))) + 1) == [7, 12, 17, 22, 27, 32, 37, 42]
        assert list(np.flatnonzero(later.is_crediting_start(np.arange(60))) + 1) == [2]
        stock = np.array([[5.0], [9.0], [12.0], [10.0], [14.0], [15.0], [18.0], [20.0]])  # ends of years 1..8
        pos = later.accrued_position(stock, 0.0)[:, 0]
        # 0 before the start (end of year 2); then the change since the stock then (9), less nothing issued;
        # after the verification at the end of year 7, the change since its stock (18)
        np.testing.assert_allclose(pos, [0, 0, 0, 3, 1, 5, 6, 0, 2])
        assert CreditingRules.from_parameters(params, start_year=2026, crediting_start_year=2076) \
            .first_issuance_year() == 55
        with pytest.raises(ValueError, match="51 years after the run's start"):
            CreditingRules.from_parameters(params, start_year=2026, crediting_start_year=2077)
        with pytest.raises(ValueError, match="ended before the run's start"):
            CreditingRules.from_parameters(params, start_year=2026, crediting_start_year=1980)
        with pytest.raises(ValueError, match="needs the run's start year"):
            CreditingRules.from_parameters(params, crediting_start_year=2020)
        with pytest.raises(ValueError, match="whole number"):
            CreditingRules.from_parameters(params, start_year=2026, crediting_start_year=2020.5)

    def test_checked_rules_name_the_override_at_fault(self, params):
        """One refusal for every caller that reports it at a field (loan terms, the quote, the API's requests)."""
        with pytest.raises(ValueError, match=r"^crediting_start_year: the crediting start is 60 years after the run's"):
            CreditingRules.checked(params, start_year=2026, crediting_start_year=2086)
        with pytest.raises(ValueError, match=r"^crediting_period_years: must be >= monitoring_period_years"):
            CreditingRules.checked(params, start_year=2026, crediting_period_years=3)
        # a reason that names several overrides is reported at the first given of them
        with pytest.raises(ValueError, match=r"^crediting_start_year: the crediting period"):
            CreditingRules.checked(params, start_year=2026, crediting_start_year=1980, crediting_period_years=20)
        assert CreditingRules.checked(params, start_year=2026) == CreditingRules.from_parameters(params)

    def test_the_engine_credits_a_project_from_its_crediting_start(self, params):
        """simulate's crediting override: a project crediting since 2023 issues at the ends of 2027, 2032 and
        2037 (its 5th, 10th and 15th years), and the provenance records the rules its consumers re-read."""
        from finance_engine.simulation import simulate
        from models.dynamics import SimulationSwitches
        from models.portfolio import validate_frame
        from tests.conftest import make_frame

        pf = validate_frame(make_frame(6, seed=3, species=["chinese_fir"]).assign(age_years=5, project_id="P"), params)
        sw = SimulationSwitches(parameter_uncertainty=False, growth_shocks=False, parcel_noise=False, perils=())
        res = simulate(pf, params, years=12, paths=4, seed=1, switches=sw, levels=("portfolio",), start_year=2026,
                       crediting={"crediting_start_year": 2023})
        by = res.summary[(res.summary.metric == "credits_issued_tco2e")].set_index("calendar_year")["mean"]
        assert list(by.index[by > 0]) == [2027, 2032, 2037]
        # the first verification credits the change since the run's start only (2 years of 5): it errs low
        assert 0.25 < by.loc[2027] / by.loc[2032] < 0.5
        assert res.provenance["crediting"]["years_credited_before_start"] == 3
        with pytest.raises(ValueError, match="crediting_start_year"):
            simulate(pf, params, years=12, paths=4, seed=1, switches=sw, crediting={"crediting_start_year": 2090})

    def test_bad_rules_rejected(self, params):
        with pytest.raises(ValueError, match="buffer_fraction"):
            CreditingRules.from_parameters(params, buffer_fraction=1.2)
        with pytest.raises(ValueError, match="unknown crediting rule"):
            CreditingRules.from_parameters(params, discount=0.1)
