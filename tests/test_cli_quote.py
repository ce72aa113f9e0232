"""``carbon-risk quote`` and ``carbon-risk price-layer``: outputs, exit codes, one-line errors."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from api.cli import main
from tests.conftest import make_frame


@pytest.fixture(scope="module")
def portfolio_csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("cliq") / "parcels.csv"
    make_frame(60, seed=21).to_csv(p, index=False)
    return str(p)


@pytest.fixture(scope="module")
def elt_csv(tmp_path_factory):
    # 10 years; year 0: 50 and 300; year 2: 120; year 4: 700 (same hand case as test_quote)
    p = tmp_path_factory.mktemp("elt") / "elt.csv"
    pd.DataFrame({"year": [0, 0, 2, 4], "event_id": [1, 2, 3, 4], "loss": [50.0, 300.0, 120.0, 700.0]}).to_csv(
        p, index=False)
    return str(p)


def _run(args, capsys):
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_quote_table_json_and_slip(portfolio_csv, tmp_path, capsys):
    code, out, _ = _run(["quote", "-p", portfolio_csv, "--paths", "64", "--perils", "fire,pine_wilt",
                         "--deductible", "1t", "--deductible-basis", "event", "--layer", "1k:20k"], capsys)
    assert code == 0 and "Gross premium" in out and "PML" in out and "Reinsurance layers" in out
    # the pure premium's Monte Carlo error and, apart, its spread from the uncertain parameters
    line = next(ln for ln in out.splitlines() if ln.startswith("Pure premium"))
    assert "MC s.e." in line and "parameter sd" in line
    assert re.search(r"parameter sd (not resolved|[\d,.]+) \[[\d,.]+–[\d,.]+\]\)", line), line  # its 95 % interval
    slip = tmp_path / "slip.html"
    code, out, err = _run(["quote", "-p", portfolio_csv, "--paths", "64", "--cover", "sink-index", "--price", "35",
                           "--index-error", "normal", "--loading", "wang", "--lambda", "0.3", "--format", "json",
                           "-o", str(slip)], capsys)
    assert code == 0 and "wrote" in err
    d = json.loads(out)
    assert d["cover"]["kind"] == "sink-index" and d["cover"]["error_cv"] == 0.1
    assert d["loading"] == {**d["loading"], "method": "wang", "parameter": 0.3}
    assert d["provenance"]["paths"] == 64 and d["basis_risk"]["n_years"] == 64
    html = slip.read_text(encoding="utf-8")
    assert "Quote slip" in html and "data:image/png;base64," in html and "Basis risk" in html
    assert "Parameter uncertainty of the pure premium" in html
    code, out, _ = _run(["quote", "-p", portfolio_csv, "--paths", "32", "--cover", "price-floor", "--strike", "55",
                         "--volume", "1000", "--format", "json", "-o", str(tmp_path / "q.xlsx")], capsys)
    assert code == 0 and json.loads(out)["provenance"]["price_model_sha256"]
    assert (tmp_path / "q.xlsx").stat().st_size > 0


@pytest.mark.parametrize("args, msg", [
    (["--perils", "fire,flood"], "unknown peril"),
    (["--deductible", "abc"], "--deductible"),
    (["--limit", "-5"], "--limit"),
    (["--layer", "5M"], "ATTACHMENT:LIMIT"),
    (["--layer", "1M:0"], "limit_cny"),
    (["--cover", "sink-index", "--trigger", "3"], "trigger_fraction"),
    (["--loading", "sd", "--expense-ratio", "0.99"], "< 1"),
    (["--subsidy", "martian"], "subsidy scheme"),
    (["--cover", "price-floor", "--years", "1"], "--years 1: a price floor on the simulated credits sees none"),
    (["-o", "x.pdf"], "unsupported file type"),
])
def test_quote_bad_input_exits_2_with_one_line(portfolio_csv, args, msg, capsys):
    code, out, err = _run(["quote", "-p", portfolio_csv, "--paths", "8", *args], capsys)
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("quoting")]
    assert len(lines) == 1 and msg in lines[0] and "Traceback" not in err


def test_price_layer_hand_case(elt_csv, capsys):
    code, out, _ = _run(["price-layer", elt_csv, "--years", "10", "--attachment", "100", "--limit", "400",
                         "--loading", "none", "--format", "json"], capsys)
    assert code == 0
    d = json.loads(out)
    # per event: 0 + 200, 20, 400 -> 620 over 10 years
    assert d["pure_premium"] == pytest.approx(62.0) and d["prob_attachment"] == pytest.approx(0.3)
    assert d["prob_exhaustion"] == pytest.approx(0.1) and d["multiple"] == pytest.approx(1.0)
    code, out, _ = _run(["price-layer", elt_csv, "--years", "10", "--attachment", "100", "--limit", "400",
                         "--basis", "aggregate", "--format", "json"], capsys)
    # annual totals 350, 120, 700 -> 250 + 20 + 400
    assert code == 0 and json.loads(out)["pure_premium"] == pytest.approx(67.0)
    code, out, _ = _run(["price-layer", elt_csv, "--years", "10", "--attachment", "100", "--limit", "400",
                         "--reinstatements", "1"], capsys)
    assert code == 0 and "Upfront pure premium" in out


def test_price_layer_loads_a_remote_layer_on_its_tvar(tmp_path, capsys):
    """A layer hit in 1 year of 1,000 has a VaR 99.5 % of 0: cost of capital is charged on its own TVaR 99.5 %
    (the mean of the worst 5 years, 80), as the quote's layers are, not priced at its expected loss."""
    elt = tmp_path / "remote.csv"
    pd.DataFrame({"year": [0], "event_id": [1], "loss": [500.0]}).to_csv(elt, index=False)
    code, out, _ = _run(["price-layer", str(elt), "--years", "1000", "--attachment", "100", "--limit", "400",
                         "--loading", "coc", "--format", "json"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["pure_premium"] == pytest.approx(0.4)
    assert d["technical_premium"] == pytest.approx(0.4 + 0.06 * (80.0 - 0.4))  # 1 + 6 % x 199 = 12.94 x E[X]
    assert d["multiple"] == pytest.approx(12.94) and d["loading_parameters"]["measure"] == "tvar"


def test_price_layer_bad_files_exit_2(elt_csv, tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"yr": [0], "loss": [1.0]}).to_csv(wrong, index=False)
    neg = tmp_path / "neg.csv"
    pd.DataFrame({"year": [0], "event_id": [1], "loss": [-1.0]}).to_csv(neg, index=False)
    text = tmp_path / "elt.txt"
    text.write_text("year,event_id,loss\n")
    for args, msg in [([str(tmp_path / "missing.csv")], "no such file"), ([str(empty)], "empty"),
                      ([str(wrong)], "missing required column"), ([str(neg)], ">= 0"), ([str(text)], "unsupported"),
                      ([elt_csv, "--attachment", "x"], "not an amount")]:
        base = ["price-layer", *args[:1], "--years", "10"]
        extra = args[1:] if len(args) > 1 else ["--attachment", "1"]
        code, _, err = _run([*base, *extra, "--limit", "5"], capsys)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (args, err)
    code, _, err = _run(["price-layer", elt_csv, "--years", "3", "--attachment", "1", "--limit", "5"], capsys)
    assert code == 2 and "[0, n_years=3)" in err
    code, _, err = _run(["price-layer", elt_csv, "--attachment", "1", "--limit", "5"], capsys)
    assert code == 2 and "--years" in err


def test_engine_elt_can_be_priced_with_column_options(portfolio_csv, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["simulate", "-p", portfolio_csv, "--years", "1", "--paths", "64", "--loss-table", "portfolio",
                 "-o", str(run)]) == 0
    capsys.readouterr()
    code, out, err = _run(["price-layer", str(run / "event_loss_table.csv"), "--years", "64", "--attachment", "0",
                           "--limit", "inf", "--year-col", "sim_year", "--loss-col", "loss_tco2e", "--format", "json"],
                          capsys)
    assert code == 0, err
    elt = pd.read_csv(run / "event_loss_table.csv")
    assert json.loads(out)["pure_premium"] == pytest.approx(elt.loss_tco2e.sum() / 64)
    assert np.isfinite(json.loads(out)["sd_annual_loss"])


def test_the_cli_offers_the_engines_levels():
    """The CLI writes the engine's levels out (importing the engine would slow its start); they must agree."""
    from api.cli.commands.quote import AAL_LEVELS
    from api.cli.common import LEVEL_CHOICES
    from finance_engine.simulation.config import ALL_LEVELS

    from api.cli.commands.simulate import simulate_cmd

    assert LEVEL_CHOICES == list(ALL_LEVELS) and AAL_LEVELS is LEVEL_CHOICES
    level = next(p for p in simulate_cmd.params if p.name == "levels")
    assert list(level.type.choices) == LEVEL_CHOICES


def test_a_price_floors_default_strike_is_its_series_price_today(portfolio_csv, capsys):
    """A pilot ETS floor without --strike or --price strikes at the pilot series' own price today (40.36), not
    the CEA's 60 (which priced it deep in the money)."""
    from finance_engine.price import load_price_model

    code = main(["quote", "-p", str(portfolio_csv), "--cover", "price-floor", "--price-model", "pilot_ets",
                 "--volume", "1000", "--paths", "64", "--years", "1", "--format", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    cover = json.loads(out.out)["cover"]
    assert cover["strike_cny_per_tco2e"] == pytest.approx(load_price_model().start_price("pilot_ets"))
