"""``carbon-risk quote`` after the user-flow review: the README's price floor runs, errors name the CLI's options,
every premium figure shows its Monte Carlo error, and options the chosen cover does not use are refused."""

from __future__ import annotations

import json
import re

import pytest

from api.cli import main
from tests.conftest import make_frame


@pytest.fixture(scope="module")
def no_project_csv(tmp_path_factory):
    """Parcels in no crediting project: no credits are ever issued."""
    p = tmp_path_factory.mktemp("qrev0") / "parcels.csv"
    make_frame(30, seed=4).to_csv(p, index=False)
    return str(p)


def _run(args, capsys):
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.strip().splitlines() if ln.startswith("carbon-risk: error")]


# ---- finding 2: the README's `carbon-risk quote --cover price-floor` ---------------------------------------
def test_the_readme_price_floor_runs_over_the_monitoring_period(portfolio_csv, capsys):
    code, out, err = _run(["quote", "-p", portfolio_csv, "--cover", "price-floor", "--paths", "16", "--format", "json"],
                          capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["provenance"]["years"] == 5 and d["exposure"]["insured_tco2e"] > 0
    assert "--years defaults to 5, the run year of the first verification" in err
    # a fixed volume needs no issuance: the default stays one policy year
    code, out, err = _run(["quote", "-p", portfolio_csv, "--cover", "price-floor", "--volume", "100", "--paths", "8",
                           "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["provenance"]["years"] == 1


def test_a_price_floor_without_credits_names_the_cli_options(portfolio_csv, no_project_csv, capsys):
    code, out, err = _run(["quote", "-p", portfolio_csv, "--cover", "price-floor", "--years", "3", "--paths", "8"],
                          capsys)
    assert code == 2 and out == ""
    (line,) = _error_lines(err)
    assert "--years 3" in line and "--years 5 or more" in line and "--volume" in line and "volume_tco2e" not in line
    # parcels in no project never issue credits: the engine's error comes back in the CLI's words
    code, out, err = _run(["quote", "-p", no_project_csv, "--cover", "price-floor", "--paths", "8"], capsys)
    assert code == 2 and out == ""
    (line,) = _error_lines(err)
    assert line.startswith("carbon-risk: error: --volume: the simulated credits issued are 0 in the 5 policy year(s)")
    assert "--years" in line and "volume_tco2e" not in line


# ---- finding 6: options the cover does not use ---------------------------------------------------------------
@pytest.mark.parametrize("args, named, cover", [
    (["--cover", "sink-index", "--deductible", "5%"], "--deductible", "sink-index"),
    (["--cover", "sink-index", "--perils", "fire"], "--perils", "sink-index"),
    (["--cover", "sink-index", "--deductible-basis", "event"], "--deductible-basis", "sink-index"),
    (["--cover", "sink-index", "--strike", "50"], "--strike", "sink-index"),
    (["--trigger", "0.5"], "--trigger", "stock-loss"),
    (["--cover", "stock-loss", "--expected-sink", "100"], "--expected-sink", "stock-loss"),
    (["--index-error", "normal"], "--index-error", "stock-loss"),
    (["--volume", "100"], "--volume", "stock-loss"),
    (["--price-model", "pilot_ets"], "--price-model", "stock-loss"),
    (["--cover", "price-floor", "--volume", "100", "--trigger", "0.8"], "--trigger", "price-floor"),
    (["--cover", "price-floor", "--volume", "100", "--perils", "fire"], "--perils", "price-floor"),
    (["--cover", "sink-index", "--error-cv", "0.2"], "--error-cv", "--index-error none"),
])
def test_options_the_cover_does_not_use_are_refused(portfolio_csv, args, named, cover, capsys):
    code, out, err = _run(["quote", "-p", portfolio_csv, "--paths", "8", *args], capsys)
    assert code == 2 and out == ""
    (line,) = _error_lines(err)
    assert named in line and cover in line, line
    assert "quoting" not in err  # refused before any simulation


def test_several_foreign_options_are_named_together(portfolio_csv, capsys):
    code, _, err = _run(["quote", "-p", portfolio_csv, "--cover", "sink-index", "--deductible", "5%", "--perils", "fire"],
                        capsys)
    assert code == 2
    (line,) = _error_lines(err)
    assert "--perils, --deductible: do not apply to --cover sink-index (they are stock-loss terms)" in line


def test_the_covers_own_options_are_accepted(portfolio_csv, capsys):
    code, _, err = _run(["quote", "-p", portfolio_csv, "--paths", "8", "--cover", "sink-index", "--trigger", "0.7",
                         "--index-error", "normal", "--error-cv", "0.2", "--limit", "1M", "--participation", "0.9",
                         "--format", "json"], capsys)
    assert code == 0, err


# ---- finding 3: every premium figure with its Monte Carlo error ------------------------------------------
def test_the_text_quote_shows_the_premiums_errors(portfolio_csv, capsys):
    args = ["quote", "-p", portfolio_csv, "--paths", "32", "--layer", "1k:19k", "--layer", "20k:100k"]
    code, out, err = _run([*args, "--format", "json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    p = d["premium"]
    code, text, _ = _run(args, capsys)
    assert code == 0
    lines = text.splitlines()
    gross = next(ln for ln in lines if ln.startswith("Gross premium"))
    assert f"Gross premium {p['gross_premium_cny']:,.0f} ± {p['gross_premium_mc_se_cny']:,.0f} CNY" in gross
    assert f"{100 * p['rate_on_sum_insured']:.2f}% ± {100 * p['rate_on_sum_insured_mc_se']:.2f}% of sum insured" in gross
    assert f"pure rate {100 * p['pure_rate']:.2f}% ± {100 * p['pure_rate_mc_se']:.2f}%" in gross
    assert f"{p['premium_per_mu_cny']:,.2f} ± {p['premium_per_mu_mc_se_cny']:,.2f} CNY/mu" in gross
    assert f"{p['premium_per_ha_cny']:,.2f} ± {p['premium_per_ha_mc_se_cny']:,.2f} CNY/ha" in gross
    assert f"{p['premium_per_tco2e_cny']:,.2f} ± {p['premium_per_tco2e_mc_se_cny']:,.2f} CNY/tCO2e" in gross
    pure = next(ln for ln in lines if ln.startswith("Pure premium"))
    assert f"risk load (coc) {p['risk_load_cny']:,.0f} ± {p['risk_load_mc_se_cny']:,.0f}" in pure
    # the layers: reinsurance premium and rate on line with their errors, as the JSON has them
    start = next(i for i, ln in enumerate(lines) if ln.startswith("Reinsurance layers"))
    rows = lines[start + 3:start + 3 + len(d["layers"])]
    for row, lay in zip(rows, d["layers"]):
        assert f"{lay['reinsurance_premium_cny']:,.0f} ± {lay['reinsurance_premium_mc_se_cny']:,.0f}" in row, row
        assert f"{100 * lay['rate_on_line']:.2f}% ± {100 * lay['rate_on_line_mc_se']:.2f}%" in row, row
    # each of the six figures with its error (a probability of exactly 0 or 1 with its rule-of-three interval)
    assert len(re.findall("±|rule of three", "\n".join(rows))) == 6 * len(d["layers"])


def test_a_price_floor_follows_the_projects_crediting_start(portfolio_csv, capsys):
    """Projects crediting since 2023 verify at the end of 2027, run year 2: the price floor's policy years default
    to 2 and see credits there; fewer years are refused naming the first verification; a start after the run is
    refused naming the option."""
    code, out, err = _run(["quote", "-p", portfolio_csv, "--cover", "price-floor", "--paths", "16",
                           "--crediting-start-year", "2023", "--format", "json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["provenance"]["years"] == 2 and d["exposure"]["insured_tco2e"] > 0
    assert d["provenance"]["crediting"]["years_credited_before_start"] == 3
    assert "--years defaults to 2, the run year of the first verification" in err
    code, out, err = _run(["quote", "-p", portfolio_csv, "--cover", "price-floor", "--paths", "16", "--years", "1",
                           "--crediting-start-year", "2023"], capsys)
    assert code == 2 and "ends run year 2" in err and "--years 2 or more" in err
    code, out, err = _run(["quote", "-p", portfolio_csv, "--cover", "price-floor", "--paths", "16",
                           "--crediting-start-year", "2090"], capsys)
    assert code == 2 and "--crediting-start-year" in err and "64 years after the run's start" in err
    # a later start: the price floor covers the years to the first verification, a monitoring period after it
    code, out, err = _run(["quote", "-p", portfolio_csv, "--cover", "price-floor", "--paths", "16",
                           "--crediting-start-year", "2028", "--format", "json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["provenance"]["years"] == 7 and d["provenance"]["crediting"]["years_credited_before_start"] == -2


@pytest.mark.parametrize("args, msg", [
    (["--cover", "stock-loss"], "--crediting-start-year: does not apply to --cover stock-loss"),
    (["--cover", "sink-index"], "--crediting-start-year: does not apply to --cover sink-index"),
    (["--cover", "price-floor", "--volume", "1000"], "a price floor on a fixed --volume pays on the price alone"),
])
def test_crediting_options_a_cover_cannot_use_are_refused(portfolio_csv, capsys, args, msg):
    """The crediting rules change only a price floor on the simulated credits; given with another cover they
    were accepted and ignored."""
    code, _, err = _run(["quote", "-p", portfolio_csv, "--paths", "16", *args, "--crediting-start-year", "2020"],
                        capsys)
    assert code == 2 and msg in err


def test_the_engines_quote_refuses_crediting_for_a_cover_it_cannot_change(params):
    from finance_engine.insurance import InsuranceInputError, PriceFloorCover, StockLossCover, quote
    from finance_engine.insurance.quote import crediting_applies

    assert crediting_applies(PriceFloorCover(60.0)) and not crediting_applies(PriceFloorCover(60.0, volume_tco2e=1e3))
    with pytest.raises(InsuranceInputError, match="^crediting: crediting_start_year only apply to a price floor"):
        quote(StockLossCover(60.0), None, params, paths=8, crediting={"crediting_start_year": 2020})


def test_a_quote_that_pays_nothing_says_why_in_its_json_and_slip(portfolio_csv, params, tmp_path):
    """A deductible above every year's covered loss: every figure is 0, and the quote says why (risk.no_payout_note,
    which the CLI, the API's JSON and the slip carry); a quote that pays has no note."""
    from finance_engine.insurance import Deductible, StockLossCover, quote
    from finance_engine.reports.quote_slip import render_quote_slip
    from models.portfolio import load_portfolio

    pf = load_portfolio(portfolio_csv, params)
    q = quote(StockLossCover(60.0, deductible=Deductible(1e12, "cny", "annual")), pf, params, paths=16, years=1, seed=3)
    assert q.premium["pure_premium_cny"] == 0 and q.risk["prob_payout"] == 0
    note = q.risk["no_payout_note"]
    assert "16 simulated policy years (16 paths x 1 year(s))" in note and "annual deductible" in note
    assert "No expected loss:" in render_quote_slip(q) and "exceeds every simulated year" in render_quote_slip(q)
    assert quote(StockLossCover(60.0), pf, params, paths=16, years=1, seed=3).risk["no_payout_note"] is None
    # without terms no cause is made up; a limit of 0 is named
    from finance_engine.insurance.quote import nothing_paid_note

    assert nothing_paid_note({}, 200, None, []).endswith("is 0")
    assert nothing_paid_note({"kind": "stock-loss", "limit_cny": 0, "participation": 1}, 200, None, []).endswith(
        "(its limit or participation is 0)")
