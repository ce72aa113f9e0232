"""The quote slip's Cover table shows the terms the run sets (review: a sink index's ``limit_cny | none`` and
``expected_sink_tco2e | none`` read as an unlimited cover): the effective limit (the triggered sink's value) and
the expected sink that sets the trigger, with their Monte Carlo errors; a price floor's simulated volume."""

from __future__ import annotations

import html as htmllib
import json
import re

import pytest

from api.cli import main
from finance_engine.reports.quote_slip import cover_items, render_quote_slip


def _cover_rows(html: str) -> dict[str, str]:
    part = html[html.index("<h2>Cover"):html.index("<h2>Premium")]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>", part, flags=re.S)
    return {htmllib.unescape(k): htmllib.unescape(v) for k, v in rows}


@pytest.fixture(scope="module")
def sink_quote(portfolio_csv, tmp_path_factory):
    slip = tmp_path_factory.mktemp("slip") / "slip.html"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(["quote", "-p", portfolio_csv, "--cover", "sink-index", "--paths", "32", "--format", "json",
                     "-o", str(slip)])
    assert code == 0
    return json.loads(buf.getvalue()), slip.read_text(encoding="utf-8")


def test_the_sink_index_slip_shows_the_effective_limit_and_expected_sink(sink_quote):
    d, html = sink_quote
    rows = _cover_rows(html)
    assert "none" not in (rows["limit_cny"] + rows["expected_sink_tco2e"])
    e, c = d["exposure"], d["cover"]
    assert c["limit_cny"] is None and c["expected_sink_tco2e"] is None and e["estimated_from_run"] is True
    # the limit is the triggered sink's value, price x trigger x expected sink (the sum insured at 100 %)
    assert e["sum_insured_cny"] == pytest.approx(c["price_cny_per_tco2e"] * c["trigger_fraction"] * e["insured_tco2e"])
    assert rows["limit_cny"].startswith(f"{e['sum_insured_cny']:,.0f} ± {e['sum_insured_mc_se_cny']:,.0f} CNY")
    assert "value of the triggered sink" in rows["limit_cny"]
    assert rows["expected_sink_tco2e"].startswith(f"{e['insured_tco2e']:,.0f} ± {e['insured_tco2e_mc_se']:,.0f} tCO2e/yr")
    assert f"the trigger is {0.8 * e['insured_tco2e']:,.0f} tCO2e" in rows["expected_sink_tco2e"]
    # the errors are the run's (jackknife over parameter sets), not zero
    assert e["insured_tco2e_mc_se"] > 0 and e["sum_insured_mc_se_cny"] == pytest.approx(
        c["price_cny_per_tco2e"] * c["trigger_fraction"] * e["insured_tco2e_mc_se"], rel=1e-9)


def test_a_stored_quote_without_the_errors_still_shows_the_terms(sink_quote):
    """A quote stored before the errors were reported re-renders with the values and no 'none'."""
    d, _ = sink_quote
    old = {**d, "exposure": {k: v for k, v in d["exposure"].items()
                             if k not in ("insured_tco2e_mc_se", "sum_insured_mc_se_cny", "estimated_from_run")}}
    items = dict(cover_items(old))
    assert items["limit_cny"].startswith(f"{d['exposure']['sum_insured_cny']:,.0f} CNY")
    assert items["expected_sink_tco2e"].startswith(f"{d['exposure']['insured_tco2e']:,.0f} tCO2e/yr")
    assert "none" not in _cover_rows(render_quote_slip(old))["limit_cny"]


def test_a_given_limit_or_expected_sink_is_shown_as_given(sink_quote):
    d, _ = sink_quote
    given = {**d, "cover": {**d["cover"], "limit_cny": "unlimited", "expected_sink_tco2e": 5000.0}}
    items = dict(cover_items(given))
    assert items["limit_cny"] == "unlimited" and items["expected_sink_tco2e"] == "5,000"


def test_the_price_floor_slip_shows_the_simulated_volume(portfolio_csv, tmp_path, capsys):
    slip = tmp_path / "floor.html"
    code = main(["quote", "-p", portfolio_csv, "--cover", "price-floor", "--paths", "32", "--format", "json",
                 "-o", str(slip)])
    out = capsys.readouterr().out
    assert code == 0
    e = json.loads(out)["exposure"]
    rows = _cover_rows(slip.read_text(encoding="utf-8"))
    assert rows["volume_tco2e"].startswith(f"{e['insured_tco2e']:,.0f} ± {e['insured_tco2e_mc_se']:,.0f} tCO2e/yr")
    assert "simulated credits issued" in rows["volume_tco2e"]
    assert all(v != "none" for v in rows.values()), rows


def test_the_cli_text_shows_the_run_set_terms(portfolio_csv, capsys):
    code = main(["quote", "-p", portfolio_csv, "--cover", "sink-index", "--paths", "32"])
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^  limit_cny: [\d,]+ ± [\d,]+ CNY: the value of the triggered sink", out, flags=re.M), out
    assert re.search(r"^  expected_sink_tco2e: [\d,]+ ± [\d,]+ tCO2e/yr", out, flags=re.M), out
