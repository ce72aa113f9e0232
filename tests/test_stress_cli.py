"""carbon-risk stress and validate --kind scenario on a small portfolio."""

from __future__ import annotations

import json

from api.cli import main
from tests.conftest import make_frame


def test_stress_cli_json_and_reports(tmp_path, capsys):
    pf = tmp_path / "p.csv"
    make_frame(60, seed=2).to_csv(pf, index=False)
    rc = main(["stress", "-p", str(pf), "-s", "super_typhoon", "--years", "2", "--paths", "16", "--format", "json",
               "-o", str(tmp_path / "r.html")])
    out = capsys.readouterr().out
    assert rc == 0
    d = json.loads(out)
    assert [r["scenario"] for r in d["scenarios"]] == ["baseline", "super_typhoon"]
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "<script src" not in html and "http" not in html.split("<body>")[0]
    rc = main(["stress", "-p", str(pf), "-s", "baseline", "--years", "1", "--paths", "8", "-o", str(tmp_path / "r.xlsx")])
    assert rc == 0
    import pandas as pd

    assert {"scenarios", "horizon", "by_year", "provenance"} <= set(pd.ExcelFile(tmp_path / "r.xlsx").sheet_names)


def test_stress_cli_text_shows_error_bars_and_provenance_with_instruments(tmp_path, capsys):
    # the shipped demo portfolio and registry: loans, policies and an insurer, so every headline figure shows
    rc = main(["stress", "-s", "ice_storm_2008", "--registry", "demo", "--years", "2", "--paths", "32",
               "-o", str(tmp_path / "r.xlsx")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "model 0." in out and "sha256" in out and "seed" in out
    for figure in ("loss_tco2e vs baseline", "bank_collateral_coverage", "insurer_gross_loss_ratio",
                   "budget_expected_annual_total_cny"):
        line = next(ln for ln in out.splitlines() if ln.startswith(figure))
        assert line.count("±") == 2, line  # baseline and the scenario
        # the carbon figures also show, apart, the spread from the uncertain parameters
        assert line.count("param sd") == (2 if figure.startswith("loss_tco2e") else 0), line
    import pandas as pd

    insurer = pd.read_excel(tmp_path / "r.xlsx", sheet_name="insurer")
    assert {"gross_loss_ratio_mc_se", "net_annual_loss_1_in_200_ci95_low_cny"} <= set(insurer.columns)


def test_bad_scenario_is_exit_2_naming_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: '1'\nforced_events: [{year: 2, peril: ice_storm, severty: 1}]\n", encoding="utf-8")
    assert main(["validate", str(bad), "--kind", "scenario"]) == 2
    err = capsys.readouterr().err
    assert "forced_events.0" in err and "severty" in err
    assert main(["stress", "-s", str(bad)]) == 2
    good = tmp_path / "good.yaml"
    good.write_text("name: y\nversion: '1'\nhazard: {fire: 2}\n", encoding="utf-8")
    assert main(["validate", str(good), "--kind", "scenario"]) == 0


def test_policy_levers_with_the_baseline_alone(capsys):
    """`stress -s baseline --levers --registry`: the policy levers compare the baseline with no other scenario (the
    runs held for them were built only for two or more scenarios, and the baseline alone raised a TypeError)."""
    rc = main(["stress", "-s", "baseline", "--levers", "--registry", "demo", "--years", "2", "--paths", "16",
               "--format", "json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    d = json.loads(cap.out)
    assert d["policy_levers"] and {r["scenario"] for r in d["policy_levers"]} == {"baseline"}
