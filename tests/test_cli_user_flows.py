"""Defects a user-flow review of the CLI found: the collateral by-year table printed the schedule's balance beside
probabilities measured against the paths' balances (after met top-up calls), without their errors; a heading said
"Credits over 30 years" for a project whose crediting ends sooner; ``simulate -o DIR`` replaced a previous run's
folder without ``--force``; ``price-layer`` named no row of a bad loss; probabilities estimated at exactly 0 read
"0.00% ± 0.00%" in ``quote`` and ``price-layer`` (and the quote's help example priced nothing); ``simulate`` printed
a clipped parameter sd as 0 where ``accounts`` and ``stress`` print "not resolved"."""

from __future__ import annotations

import json
import re
import shlex

import pandas as pd
import pytest

from api.cli import main
from tests.test_cli_outputs import no_simulation, one_error_line, run  # noqa: F401  (fixture)

COLLATERAL = ["collateral", "--project", "PRJ-A", "--amount", "600000", "--term", "3", "--rate", "0.04",
              "--paths", "500", "--no-attribution"]


def _section(out: str, heading: str) -> list[str]:
    """The data rows of the table printed under the line starting with ``heading``."""
    lines = out.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith(heading))
    rows = []
    for ln in lines[i + 3:]:  # heading, column names, rule
        if not ln.strip():
            break
        rows.append(ln)
    return rows


# ---- 1. collateral: the paths' balance, and every figure with its error --------------------------------------
def test_collateral_by_year_shows_the_paths_balance_and_each_figures_error(portfolio_csv, capsys):
    code, out, err = run(capsys, *COLLATERAL, "-p", portfolio_csv, "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    by_year, zb = d["by_year"], d["risk"]["zero_one_bounds_95"]
    # the case the review met: met top-up calls leave the paths' mean balance below the schedule's
    assert any(r["balance_mean_cny"] < r["balance_cny"] - 1 for r in by_year)
    code, out, err = run(capsys, *COLLATERAL, "-p", portfolio_csv)
    assert code == 0, err
    balance = _section(out, "Balance and calls over the term")
    value = _section(out, "Collateral value over the term")
    assert "balance_mean_paths_cny" in out and "balance_schedule_cny" in out
    assert len(balance) == len(value) == len(by_year) == 3
    for r, b, v in zip(by_year, balance, value):
        y = r["year"]
        assert b.split()[0] == v.split()[0] == str(y)
        assert f"{r['balance_cny']:,.0f}" in b and f"{r['balance_mean_cny']:,.0f}" in b, b
        for col in ("p_value_below_balance", "p_top_up_call"):
            bound = zb.get(f"{col}_year_{y}")
            want = (f"{r[col]:.2%} (95% bound {bound[0]:.2%} - {bound[1]:.2%}, rule of three)" if bound
                    else f"{r[col]:.2%} ± {r[col + '_mc_se']:.2%}")
            assert want in b, (want, b)
        assert "0.00% ± 0.00%" not in b
        assert f"{r['value_mean_cny']:,.0f} ± {r['value_mc_se_cny']:,.0f}" in v, v
        for q in ("p05", "p50", "p95"):
            want = (f"{r[f'value_{q}_cny']:,.0f} ({r[f'value_{q}_ci95_low_cny']:,.0f} - "
                    f"{r[f'value_{q}_ci95_high_cny']:,.0f})")
            assert want in v, (want, v)
        assert f"{r['ltv_p95']:.3f} ({r['ltv_p95_ci95_low']:.3f} - {r['ltv_p95_ci95_high']:.3f})" in b, b
    # the crediting period (the parameter file's 40 years from the run's start) covers the whole horizon
    line = next(ln for ln in out.splitlines() if ln.startswith("Credits issued"))
    assert "30-year valuation horizon 2026-2055 (all of it in the crediting period)" in line, line


def test_collateral_credits_heading_says_what_a_short_crediting_period_counts(portfolio_csv, capsys):
    code, out, err = run(capsys, "collateral", "-p", portfolio_csv, "--project", "PRJ-A", "--amount", "80000",
                         "--term", "3", "--rate", "0.04", "--paths", "32", "--no-attribution",
                         "--crediting-start-year", "2019", "--crediting-period-years", "20")
    assert code == 0, err
    assert "Credits over 30 years" not in out
    line = next(ln for ln in out.splitlines() if ln.startswith("Credits issued"))
    # crediting began in 2019 for 20 years: the run's years 2026-2038 are credited, none after 2038
    assert "over the 30-year valuation horizon 2026-2055, for the removals of 2026-2038 (13 years; crediting " \
           "period 2019-2038: nothing is credited outside it)" in line, line


# ---- 2. simulate -o DIR: a previous run's folder needs --force ---------------------------------------------
def test_simulate_keeps_a_previous_runs_folder_without_force(portfolio_csv, tmp_path, capsys, monkeypatch):
    out = tmp_path / "city_run"
    assert run(capsys, "simulate", "-p", portfolio_csv, "--years", "1", "--paths", "32", "-o", out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import finance_engine.simulation.engine as engine

    def refuse(*a, **k):
        raise RuntimeError("a simulation started")

    with monkeypatch.context() as m:
        m.setattr(engine, "_get_setup", refuse)  # refused before the run
        code, _, err = run(capsys, "simulate", "-p", portfolio_csv, "--years", "2", "--paths", "32", "-o", out)
    line = one_error_line(err)
    assert code == 2 and str(out) in line and "previous carbon-risk run's files" in line and "--force" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert "only with --force" in run(capsys, "simulate", "--help")[1]
    # --force replaces it with the new run's files
    assert run(capsys, "simulate", "-p", portfolio_csv, "--years", "2", "--paths", "32", "-o", out, "--force")[0] == 0
    prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert json.dumps(prov).count('"years": 2') >= 1


# ---- 3. price-layer: the first bad row, its column and value ------------------------------------------------
@pytest.mark.parametrize("body, row, value, reason", [
    ("0,1,100\n1,2,-5\n2,3,abc\n", 3, "'abc'", "must be numeric"),
    ("0,1,100\n1,2,-5\n2,3,7\n", 2, "-5", "must be >= 0; 1 negative value(s)"),
    # a blank line counts, as a portfolio's rows do (1 = the first line under the header)
    ("0,1,100\n\n1,2,5\n2,3,-7\n3,4,-1\n", 4, "-7", "must be >= 0; 2 negative value(s)"),
    ("0,1,100\n1,2,\n", 2, "empty", "missing (NaN)"),
    ("0,1,100\n1.5,2,5\n", 2, "1.5", "integer year indices"),
])
def test_price_layer_names_the_first_bad_row(tmp_path, capsys, body, row, value, reason):
    elt = tmp_path / "elt_bad.csv"
    elt.write_text("year,event_id,loss\n" + body, encoding="utf-8")
    code, _, err = run(capsys, "price-layer", elt, "--years", "10", "--attachment", "0", "--limit", "50")
    line = one_error_line(err)
    col = "year" if "year" in reason else "loss"
    assert code == 2
    assert f"{elt}, data row {row} (row {row + 1} counting the header), column '{col}' (value {value}):" in line, line
    assert reason in line, line


# ---- 4. a probability of exactly 0: its rule-of-three interval; an all-zero quote said plainly --------------
def test_quote_layers_show_a_rule_of_three_bound_for_a_zero_probability(capsys):
    code, out, err = run(capsys, "quote", "--paths", "400", "--layer", "2M:8M", "--layer", "10M:20M",
                         "--reinstatements", "1", "--quota-share", "0.2")
    assert code == 0, err
    rows = [r for r in _section(out, "Reinsurance layers") if " xs " in r]
    assert len(rows) == 2
    assert not any("0.00% ± 0.00%" in r for r in rows), rows
    # 400 paths in parameter sets of 4: 100 independent units, bound 3 / 100
    assert any("0.00% (95% bound 0.00% - 3.00%, rule of three)" in r for r in rows), rows


def test_quote_says_plainly_when_the_cover_pays_nothing(capsys):
    code, out, err = run(capsys, "quote", "--paths", "200", "--perils", "fire,pine_wilt", "--deductible", "1%",
                         "--limit", "20M")
    assert code == 0, err
    assert "P(payout in a policy year) 0.00% (95% bound 0.00% - 6.00%, rule of three)" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("NO EXPECTED LOSS"))
    assert "pays nothing in any of the 200 simulated policy years" in line
    assert "deductible (1% of the insured stock) exceeds every simulated year's covered loss" in line


def test_the_quote_help_example_prices_something(capsys):
    code, text, _ = run(capsys, "quote", "--help")
    example = next(ln.strip() for ln in text.splitlines() if "--deductible" in ln and "--layer" in ln
                   and ln.strip().startswith("carbon-risk quote"))
    args = shlex.split(example)[1:]
    code, out, err = run(capsys, *args, "--paths", "400", "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert d["premium"]["pure_premium_cny"] > 0 and d["layers"][0]["expected_layer_loss_cny"] > 0, example


def test_price_layer_shows_a_rule_of_three_bound_for_a_zero_probability(tmp_path, capsys):
    elt = tmp_path / "elt.csv"
    pd.DataFrame({"year": [0, 1], "event_id": [1, 2], "loss": [100.0, 5.0]}).to_csv(elt, index=False)
    code, out, err = run(capsys, "price-layer", elt, "--years", "100", "--attachment", "200", "--limit", "50")
    assert code == 0, err
    assert "P(attachment) 0.00% (95% bound 0.00% - 3.00%, rule of three)" in out
    assert "P(exhaustion) 0.00% (95% bound 0.00% - 3.00%, rule of three)" in out
    assert "± 0.00%" not in out
    code, out, _ = run(capsys, "price-layer", elt, "--years", "100", "--attachment", "0", "--limit", "50")
    assert code == 0 and re.search(r"P\(attachment\) 2\.00% ± [\d.]+%", out), out


# ---- 5. simulate: a clipped parameter sd reads "not resolved", as accounts and stress print it ------------------
def test_simulate_prints_a_clipped_parameter_sd_as_not_resolved(tmp_path, capsys):
    from tests.conftest import make_frame

    one = tmp_path / "one.csv"
    make_frame(1, seed=3).to_csv(one, index=False)
    args = ["simulate", "-p", one, "--years", "1", "--paths", "200", "--level", "portfolio"]
    code, out, err = run(capsys, *args, "--format", "json")
    assert code == 0, err
    h = pd.DataFrame(json.loads(out)["horizon"])
    h = h[h.level == "portfolio"]
    clipped = h[(h.parameter_sd == 0) & (h.mc_se > 0)]
    assert len(clipped), "the case needs a clipped parameter sd"
    code, out, err = run(capsys, *args)
    assert code == 0, err
    rows = {ln.split()[2]: ln for ln in _section(out, "Whole horizon")}
    for _, r in clipped.iterrows():
        assert "not resolved [0, " in rows[r.metric], rows[r.metric]
    for _, r in h[(h.parameter_sd == 0) & (h.mc_se == 0)].iterrows():  # an exact 0: the figure does not vary
        assert "not resolved" not in rows[r.metric]
    assert "not resolved: the spread is below the Monte Carlo noise" in out
