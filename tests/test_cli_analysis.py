"""The analysis commands: tables by default, JSON on request, one clear line and exit 2 on bad input."""

import json

import pandas as pd
import pytest

from api.cli import main


def _json(capsys):
    out = capsys.readouterr().out
    return json.loads(out)


def test_accounts_table_and_json(portfolio_csv, capsys):
    assert main(["accounts", "-p", portfolio_csv, "--paths", "32", "--level", "county"]) == 0
    out = capsys.readouterr().out
    assert "stock_bef_tco2e" in out and "莲都区" in out
    assert main(["accounts", "-p", portfolio_csv, "--paths", "32", "--format", "json"]) == 0
    d = _json(capsys)
    assert d["tree"]["name"] == "portfolio" and d["provenance"]["parameter_sha256"]
    county_sum = sum(c["stock_bef_tco2e"] for c in d["tree"]["children"][0]["children"][0]["children"])
    assert county_sum == pytest.approx(d["tree"]["stock_bef_tco2e"])


def test_accounts_writes_excel(portfolio_csv, tmp_path, capsys):
    out = tmp_path / "acc.xlsx"
    assert main(["accounts", "-p", portfolio_csv, "--paths", "0", "-o", str(out)]) == 0
    assert out.exists() and out.stat().st_size > 0


def test_simulate_json_and_outputs(portfolio_csv, tmp_path, capsys):
    assert main(["simulate", "-p", portfolio_csv, "--years", "6", "--paths", "64", "--loss-table", "portfolio",
                 "-o", str(tmp_path / "run"), "--format", "json"]) == 0
    d = _json(capsys)
    assert d["provenance"]["paths"] == 64 and d["provenance"]["years"] == 6
    assert {"summary.csv", "horizon.csv", "event_loss_table.csv", "year_loss_table.csv", "provenance.json"} <= {
        p.name for p in (tmp_path / "run").iterdir()}


def test_collateral_command(portfolio_csv, capsys, tmp_path):
    args = ["collateral", "-p", portfolio_csv, "--amount", "50000", "--term", "3", "--rate", "0.04",
            "--project", "PRJ-A", "--paths", "64", "--no-attribution"]
    assert main(args) == 0
    assert "Value today" in capsys.readouterr().out
    memo = tmp_path / "memo.html"
    assert main([*args, "--pd", "0.02", "-o", str(memo), "--format", "json"]) == 0
    d = _json(capsys)
    assert d["credit"]["pd"] == 0.02
    html = memo.read_text(encoding="utf-8")
    assert "data:image/png;base64" in html and "http://" not in html.replace("http://www.w3.org", "")


@pytest.mark.parametrize("args,needle", [
    (["accounts", "-p", "/nonexistent.csv"], "file not found"),
    (["simulate", "--paths", "0"], "'--paths': 0 is not in the range"),
    (["collateral", "--amount", "100", "--term", "3"], "missing loan term interest_rate"),
    (["collateral", "--amount", "-1", "--term", "3", "--rate", "0.04", "--paths", "32"], "amount_cny"),
    (["collateral", "--amount", "1000", "--term", "3", "--rate", "0.04", "--parcels", "NOPE", "--paths", "32"],
     "not in the portfolio"),
    (["accounts", "--level", "district"], "district"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_collateral_json_report_is_valid_json_with_open_interval_ends(tmp_path, capsys):
    # 32 paths cannot bound a 95th percentile from above: the open end is written as null, not Infinity
    import json

    out = tmp_path / "loan.json"
    assert main(["collateral", "--project", "LS-LQ-P03", "--amount", "200000", "--term", "3", "--rate", "0.0435",
                 "--paths", "32", "--no-attribution", "-o", str(out)]) == 0

    def reject(token):
        raise ValueError(f"not JSON: {token}")

    d = json.loads(out.read_text(encoding="utf-8"), parse_constant=reject)
    assert d["by_year"][0]["value_p95_ci95_high_cny"] is None


def test_demo_runs_small(capsys):
    assert main(["demo", "--paths", "32", "--years", "3", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "1. Measure" in out and "2. Risk" in out and "Provenance" in out
    # every return-period loss carries its confidence interval, in tonnes and as a share of its year's opening
    # stock, and the provenance names the model
    lines = [ln for ln in out.splitlines() if "year loss:" in ln]
    assert len(lines) == 4 and all(ln.count("95% CI") == 2 and "of its year's opening stock" in ln for ln in lines)
    assert "model 0." in out and "seed" in out and "paths 32" in out


def test_help_examples_name_projects_and_parcels_of_the_shipped_demo():
    # an example a user copies from --help must run on the shipped portfolio: every --project and
    # --parcels id in an example that does not bring its own portfolio file exists in the demo
    import re

    from api.cli import cli
    from models.demo import demo_portfolio_path

    demo = pd.read_csv(demo_portfolio_path(), dtype=str)
    projects, parcels = set(demo["project_id"].dropna()), set(demo["parcel_id"])
    texts = [cli.help] + [c.help or "" for c in cli.commands.values()]
    examples = [ln.strip() for t in texts for ln in t.splitlines() if ln.strip().startswith("carbon-risk ")]
    checked = 0
    for ex in examples:
        if re.search(r"(^| )(-p|--portfolio) ", ex):
            continue
        for pid in re.findall(r"--project (\S+)", ex):
            assert pid in projects, ex
            checked += 1
        for ids in re.findall(r"--parcels ([A-Z]\S+)", ex):
            assert set(ids.split(",")) <= parcels, ex
            checked += 1
    assert checked >= 3
