"""What the CLI writes and when it refuses: outputs never clobber files or inputs, are written atomically and
carry provenance and units; bad names, suffixes and folders are exit 2 before any simulation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from api.cli import main
from models.parameters import PARAMETER_DIR


@pytest.fixture
def no_simulation(monkeypatch):
    """Any engine run fails loudly: a check that must come before the simulation is seen to."""
    import finance_engine.simulation.engine as engine

    def refuse(*a, **k):
        raise RuntimeError("a simulation started")

    monkeypatch.setattr(engine, "_get_setup", refuse)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err and "failed:" not in err, err
    return lines[0]


def region_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shipped parameter file with the landscape it pins next to it."""
    params = tmp_path / "region.yaml"
    shutil.copy(PARAMETER_DIR / "lishui.yaml", params)
    land = tmp_path / "lishui_pine_wilt_landscape.csv"
    shutil.copy(PARAMETER_DIR / "lishui_pine_wilt_landscape.csv", land)
    return params, land


# ---- 1. simulate -o DIR holds one run's files --------------------------------------------------------------
SIM = ["simulate", "--years", "2", "--paths", "32", "--loss-table", "portfolio"]


def test_simulate_output_folder_holds_only_the_last_runs_files(portfolio_csv, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert run(capsys, *SIM, "-p", portfolio_csv, "-o", out)[0] == 0
    assert {"summary.csv", "provenance.json"} <= {p.name for p in out.iterdir()}
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # a folder of a previous run is refused without --force (as -o refuses an existing file), before any
    # simulation, and is left as it was: re-running with another portfolio threw the earlier run away
    import finance_engine.simulation.engine as engine

    def refuse(*a, **k):
        raise RuntimeError("a simulation started")

    with monkeypatch.context() as m:
        m.setattr(engine, "_get_setup", refuse)
        code, _, err = run(capsys, *SIM, "-p", portfolio_csv, "-o", out, "--output-format", "parquet")
    line = one_error_line(err)
    assert code == 2 and "previous carbon-risk run's files" in line and "--force" in line, line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # with --force it is replaced as a whole, and keeps no file of the old run
    assert run(capsys, *SIM, "-p", portfolio_csv, "-o", out, "--output-format", "parquet", "--force")[0] == 0
    names = {p.name for p in out.iterdir()}
    assert "summary.parquet" in names and not any(n.endswith(".csv") for n in names), names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]  # no temporary folder left


def test_simulate_refuses_a_foreign_folder_unless_forced(portfolio_csv, tmp_path, capsys, no_simulation):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    code, _, err = run(capsys, *SIM, "-p", portfolio_csv, "-o", out)
    assert code == 2 and "--force" in one_error_line(err) and "notes.txt" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_simulate_force_writes_into_a_foreign_folder_keeping_its_files_but_never_one_holding_an_input(
        portfolio_csv, tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("old", encoding="utf-8")
    (out / "sub" / "thesis.txt").write_text("years of work", encoding="utf-8")
    (out / "event_loss_table.csv").write_text("an earlier run's table", encoding="utf-8")
    assert run(capsys, *SIM, "-p", portfolio_csv, "-o", out, "--force", "--output-format", "parquet")[0] == 0
    names = {p.name for p in out.iterdir()}
    # the user's files stay; the run's files are this run's (an earlier run's csv table is gone)
    assert (out / "notes.txt").read_text() == "old" and (out / "sub" / "thesis.txt").read_text() == "years of work"
    assert {"summary.parquet", "event_loss_table.parquet", "provenance.json"} <= names
    assert "event_loss_table.csv" not in names and not any(n.startswith(".carbon-risk-run.") for n in names)
    inside = out / "parcels.csv"
    shutil.copy(portfolio_csv, inside)
    code, _, err = run(capsys, *SIM, "-p", inside, "-o", out, "--force")
    assert code == 2 and "portfolio" in one_error_line(err)
    assert inside.read_bytes() == Path(portfolio_csv).read_bytes()


# ---- 2. -o never clobbers, never an input, atomic ----------------------------------------------------------
def test_output_refuses_an_existing_file_unless_forced(portfolio_csv, tmp_path, capsys):
    target = tmp_path / "acc.csv"
    target.write_text("precious", encoding="utf-8")
    code, _, err = run(capsys, "accounts", "-p", portfolio_csv, "--paths", "0", "-o", target)
    assert code == 2 and "--force" in one_error_line(err)
    assert target.read_text(encoding="utf-8") == "precious"
    assert run(capsys, "accounts", "-p", portfolio_csv, "--paths", "0", "-o", target, "--force")[0] == 0
    assert "stock_bef_tco2e" in target.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", ["accounts", "quote", "collateral", "stress", "demo-portfolio", "landscape",
                                  "calibrate"])
def test_output_is_never_one_of_the_commands_inputs_even_with_force(case, portfolio_csv, tmp_path, capsys, no_simulation):
    params, land = region_copy(tmp_path)
    if case == "accounts":
        victim = tmp_path / "victim.csv"
        shutil.copy(portfolio_csv, victim)
        argv = ["accounts", "-p", victim, "--paths", "32", "-o", victim]
    elif case == "quote":
        victim = tmp_path / "victim.xlsx"
        pd.read_csv(portfolio_csv).to_excel(victim, index=False)
        argv = ["quote", "-p", victim, "-o", victim]
    elif case == "collateral":
        victim = tmp_path / "terms.json"
        victim.write_text(json.dumps({"amount_cny": 1e5, "term_years": 3, "interest_rate": 0.04}), encoding="utf-8")
        argv = ["collateral", "-p", portfolio_csv, "--terms", victim, "--paths", "32", "-o", victim]
    elif case == "stress":
        victim = tmp_path / "scenario.json"
        victim.write_text(json.dumps({"name": "mine", "version": "1", "hazard": {"fire": 2}}), encoding="utf-8")
        argv = ["stress", "-p", portfolio_csv, "-s", victim, "--paths", "8", "--years", "1", "-o", victim]
    elif case == "demo-portfolio":  # the landscape the parameter file names
        victim = land
        argv = ["demo-portfolio", "--parcels", "5", "--parameters", params, "-o", victim]
    elif case == "landscape":  # rebuilding the pinned landscape in place would break the parameter file
        victim = land
        argv = ["landscape", "--parameters", params, "-o", victim]
    else:
        victim = params
        argv = ["calibrate", "records.csv", "--exposure", "exposure.csv", "--parameters", params, "-o", victim]
    before = victim.read_bytes()
    code, _, err = run(capsys, *argv, "--force")
    assert code == 2, err
    assert "--force never replaces an input" in one_error_line(err)
    assert victim.read_bytes() == before


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, capsys, monkeypatch):
    import models.demo

    target = tmp_path / "p.csv"
    target.write_text("the old file", encoding="utf-8")

    def half_written(frame, path):
        Path(path).write_text("parcel_id,prov", encoding="utf-8")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(models.demo, "write_demo_csv", half_written)
    code, _, err = run(capsys, "demo-portfolio", "--parcels", "5", "-o", target, "--force")
    assert code == 1 and "No space left" in err
    assert target.read_text(encoding="utf-8") == "the old file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]  # no temporary file left behind


# ---- 6, 7. collateral ---------------------------------------------------------------------------------------
def test_collateral_insured_price_changes_only_the_agreed_price(portfolio_csv, tmp_path, capsys):
    terms = tmp_path / "terms.json"
    terms.write_text(json.dumps({"amount_cny": 1e5, "term_years": 3, "interest_rate": 0.04, "insurance": {
        "agreed_price_cny_per_tco2e": 50, "annual_deductible_tco2e": 10, "covered_perils": ["fire"]}}),
        encoding="utf-8")
    code, out, err = run(capsys, "collateral", "-p", portfolio_csv, "--terms", terms, "--insured-price", "70", "--paths",
                         "32", "--no-attribution", "--format", "json")
    assert code == 0, err
    ins = json.loads(out)["terms"]["insurance"]
    assert ins["agreed_price_cny_per_tco2e"] == 70
    assert ins["annual_deductible_tco2e"] == 10 and ins["covered_perils"] == ["fire"]


def test_collateral_parcels_and_project_together_are_refused(portfolio_csv, capsys, no_simulation):
    code, _, err = run(capsys, "collateral", "-p", portfolio_csv, "--amount", "1e5", "--term", "3", "--rate", "0.04",
                       "--parcels", "T00001", "--project", "PRJ-A", "--paths", "32")
    assert code == 2 and "--parcels or --project, not both" in one_error_line(err)
    code, out, _ = run(capsys, "collateral", "--help")
    assert code == 0 and "whole portfolio is pledged" in " ".join(out.split())


# ---- 9. stress scenarios with one name ----------------------------------------------------------------------
def test_stress_refuses_two_different_scenarios_with_one_name(portfolio_csv, tmp_path, capsys, no_simulation):
    mine = tmp_path / "my_ice.yaml"
    mine.write_text("name: ice_storm_2008\nversion: '1'\nhazard: {ice_storm: 3}\n", encoding="utf-8")
    code, _, err = run(capsys, "stress", "-p", portfolio_csv, "-s", "ice_storm_2008", "-s", mine, "--paths", "8")
    line = one_error_line(err)
    assert code == 2 and "'ice_storm_2008'" in line and str(mine) in line


# ---- 10. every name, suffix and folder checked before simulating ------------------------------------------
def _files(tmp_path: Path) -> dict[str, Path]:
    d = {}
    for name, body in {"t_pm": "amount_cny: 1e5\nterm_years: 3\ninterest_rate: 0.04\nprice_model: foo\n",
                       "t_scen": "amount_cny: 1e5\nterm_years: 3\ninterest_rate: 0.04\nprice_scenario: foo\n",
                       "reg": "loans:\n  - id: L1\n    project_id: NOPE\n    terms: {amount_cny: 20000, "
                                   "term_years: 3, interest_rate: 0.04, crediting_horizon_years: 10}\n"}.items():
        (tmp_path / f"{name}.yaml").write_text(body, encoding="utf-8")
        d[name] = tmp_path / f"{name}.yaml"
    return d


COLL = ["collateral", "--amount", "1e5", "--term", "3", "--rate", "0.04", "--paths", "32"]


@pytest.mark.parametrize("argv,needle", [
    (["collateral", "--terms", "{t_pm}", "--paths", "32"], "price_model: unknown price model 'foo'"),
    (["collateral", "--terms", "{t_scen}", "--paths", "32"], "price_scenario: unknown price scenario 'foo'"),
    ([*COLL[:2], "inf", *COLL[3:]], "'inf' is not a finite number"),
    ([*COLL, "-o", "{tmp}/memo.pdf"], "unsupported file type '.pdf'"),
    (["stress", "-s", "ice_storm_2008", "--registry", "{reg}", "--paths", "8"], "'NOPE' has no parcels"),
    (["stress", "-s", "ice_storm_2008", "--paths", "8", "-o", "{tmp}/nodir/x.html"], "does not exist"),
    (["stress", "reverse", "--shock", "severity:earthquake", "--paths", "8"], "unknown peril 'earthquake'"),
    (["stress", "reverse", "--shock", "severity:ice_storm", "--threshold", "nan", "--paths", "8"],
     "'nan' is not a finite number"),
    (["quote", "--subsidy", "bogus"], "unknown subsidy scheme 'bogus'"),
    (["quote", "--cover", "price-floor", "--price-model", "foo"], "unknown price model 'foo'"),
    (["quote", "--level", "district"], "'district' is not one of"),
    (["quote", "-o", "{tmp}/slip.pdf"], "unsupported file type '.pdf'"),
    (["accounts", "--paths", "32", "-o", "{tmp}/acc.pdf"], "unsupported file type '.pdf'"),
    (["simulate", "--paths", "32", "--scheduler", "bogus"], "processes, threads, warm, local-cluster"),
])
def test_bad_names_suffixes_and_folders_are_exit_2_before_any_simulation(argv, needle, portfolio_csv, tmp_path, capsys,
                                                                         no_simulation):
    files = {k: str(v) for k, v in _files(tmp_path).items()}
    argv = [a.format(tmp=tmp_path, **files) for a in argv]
    code, _, err = run(capsys, *argv, "-p", portfolio_csv)
    assert code == 2, err
    assert needle in one_error_line(err)


# ---- 15. forced events beyond the horizon --------------------------------------------------------------------
def test_stress_warns_of_a_forced_event_beyond_the_horizon(portfolio_csv, tmp_path, capsys):
    late = tmp_path / "late.yaml"
    late.write_text("name: late_ice\nversion: '1'\nforced_events:\n  - {year: 50, peril: ice_storm, "
                    "counties: [龙泉市], severity: 1.0}\n", encoding="utf-8")
    code, _, err = run(capsys, "stress", "-p", portfolio_csv, "-s", late, "--years", "2", "--paths", "8")
    assert code == 0, err
    said = [ln for ln in err.splitlines() if "late_ice" in ln and "year 50" in ln]
    # said once, before the run (the result's note of the same is not repeated)
    assert len(said) == 1 and said[0].startswith("warning:") and "ice_storm" in said[0] and "hit nothing" in said[0]


# ---- 16. provenance and units --------------------------------------------------------------------------------
def test_accounts_csv_and_xlsx_carry_provenance(portfolio_csv, tmp_path, capsys):
    csv = tmp_path / "acc.csv"
    assert run(capsys, "accounts", "-p", portfolio_csv, "--paths", "32", "--seed", "7", "-o", csv)[0] == 0
    prov = json.loads(Path(f"{csv}.provenance.json").read_text(encoding="utf-8"))
    assert prov["result"]["seed"] == 7 and prov["result"]["paths"] == 32
    assert len(prov["result"]["parameter_sha256"]) == 64
    assert {"portfolio", "parameter file"} <= {i["role"] for i in prov["inputs"]}
    assert next(i for i in prov["inputs"] if i["role"] == "portfolio")["path"] == portfolio_csv
    xlsx = tmp_path / "acc.xlsx"
    assert run(capsys, "accounts", "-p", portfolio_csv, "--paths", "32", "--seed", "7", "-o", xlsx)[0] == 0
    sheet = pd.read_excel(xlsx, sheet_name="provenance").set_index("key")["value"]
    assert sheet["result.seed"] == 7 and sheet["result.parameter_sha256"] == prov["result"]["parameter_sha256"]
    assert sheet["inputs.0.path"] == portfolio_csv


@pytest.mark.parametrize("case", ["demo-portfolio.csv", "demo-portfolio.xlsx", "landscape.csv", "stress.xlsx"])
def test_every_csv_and_workbook_output_records_its_provenance(case, portfolio_csv, tmp_path, capsys):
    command, suffix = case.split(".")
    out = tmp_path / f"out.{suffix}"
    argv = {"demo-portfolio": ["demo-portfolio", "--parcels", "5", "--seed", "9"],
            "landscape": ["landscape", portfolio_csv],
            "stress": ["stress", "-p", portfolio_csv, "-s", "baseline", "--years", "1", "--paths", "8", "--seed", "9"]}[command]
    code, _, err = run(capsys, *argv, "-o", out)
    assert code == 0, err
    if suffix == "csv":
        prov = json.loads(Path(f"{out}.provenance.json").read_text(encoding="utf-8"))
        keys = {"command": prov["command"], "sha": prov["result"]["parameter_sha256"],
                "input": prov["inputs"][0]["role"]}
    else:
        sheet = pd.read_excel(out, sheet_name="provenance").set_index("key")["value"]
        keys = {"command": sheet["command"], "sha": sheet["result.parameter_sha256"], "input": sheet["inputs.0.role"]}
    assert keys["command"].endswith(command) and len(keys["sha"]) == 64
    assert keys["input"] in ("parameter file", "portfolio", "registry")
    if command != "landscape":
        assert (prov["result"]["seed"] if suffix == "csv" else sheet["result.seed"]) == 9


def test_quote_workbook_columns_name_their_units(portfolio_csv, tmp_path, capsys):
    out = tmp_path / "q.xlsx"
    assert run(capsys, "quote", "-p", portfolio_csv, "--paths", "64", "-o", out)[0] == 0
    book = pd.read_excel(out, sheet_name=None)
    assert {"loss_cny", "ci_low_cny", "ci_high_cny"} <= set(book["pml"].columns)
    assert {"var_cny", "var_ci_low_cny", "var_ci_high_cny", "tvar_cny", "tvar_se_cny"} <= set(
        book["var_tvar"].columns)
    assert {"payer", "amount_cny"} <= set(book["subsidy"].columns)
    assert "result.parameter_sha256" in set(book["provenance"]["key"])


def test_collateral_workbook_keeps_numbers_numeric_and_has_the_loan_terms(portfolio_csv, tmp_path, capsys):
    out = tmp_path / "c.xlsx"
    assert run(capsys, *COLL, "-p", portfolio_csv, "--project", "PRJ-A", "--no-attribution", "-o", out)[0] == 0
    book = pd.read_excel(out, sheet_name=None)
    vt = book["value_today"]
    assert pd.api.types.is_float_dtype(vt["value_cny"]) and pd.api.types.is_float_dtype(vt["ci95_low_cny"])
    terms = book["loan_terms"].iloc[0]
    assert terms["amount_cny"] == 1e5 and terms["term_years"] == 3 and terms["interest_rate"] == 0.04


# ---- 17. help and display -------------------------------------------------------------------------------------
def test_help_texts(capsys):
    assert run(capsys, "quote", "--help")[1].count("1%%") == 0
    assert "1% (of" in " ".join(run(capsys, "quote", "--help")[1].split())
    assert "warm" in run(capsys, "simulate", "--help")[1]
    assert "0-based" in run(capsys, "price-layer", "--help")[1]


def test_simulate_shows_the_county_rows_by_default(portfolio_csv, capsys):
    code, out, _ = run(capsys, "simulate", "-p", portfolio_csv, "--years", "2", "--paths", "32")
    assert code == 0
    assert "By county" in out and "龙泉市" in out and "遂昌县" in out


def test_validate_detects_a_scenario_file(tmp_path, capsys):
    f = tmp_path / "mine.yaml"
    f.write_text("name: mine\nversion: '1'\nhazard: {fire: 2}\nforced_events: []\n", encoding="utf-8")
    code, out, err = run(capsys, "validate", f)
    assert code == 0 and "scenario mine" in out, err


def test_open_interval_ends_are_shown_as_open(portfolio_csv, capsys):
    from api.cli.tables import render_table

    assert "None" not in render_table(pd.DataFrame({"x": [1.0, None]}, dtype=object))
    code, out, _ = run(capsys, "quote", "-p", portfolio_csv, "--paths", "20")
    pml = out.split("PML")[1].split("VaR")[0]
    assert code == 0 and "open" in pml and "None" not in pml


def test_a_file_that_appears_during_the_run_is_not_overwritten_without_force(tmp_path):
    """The existence check runs before the work; the move into place re-checks (a hard link fails where the
    name exists), so a file made meanwhile is refused, not replaced."""
    from api.cli.common import CLIError, OutputFile

    target = tmp_path / "race.csv"
    out = OutputFile(target, suffixes=(".csv",), force=False, sidecar=False)
    target.write_text("theirs", encoding="utf-8")  # appears while the command runs
    with pytest.raises(CLIError, match="appeared while the command ran"):
        out.write(lambda p: p.write_text("ours", encoding="utf-8"))
    assert target.read_text() == "theirs" and [p.name for p in tmp_path.iterdir()] == ["race.csv"]
    OutputFile(target, suffixes=(".csv",), force=True, sidecar=False).write(lambda p: p.write_text("ours"))
    assert target.read_text() == "ours"


def test_progress_bar_draws_notes_above_itself(capsys):
    """A note while the bar is drawn clears the bar's line, prints the note and draws the bar again below
    it; a bar at its end starts a new line, after which notes are plain lines; a disabled bar draws nothing."""
    from api.cli.common import ProgressBar
    from finance_engine.simulation import Progress

    bar = ProgressBar("stress test", enabled=True)
    bar(Progress(1, 4, 1.0, 3.0))
    bar.note("scenario ice_storm_2008")
    bar(Progress(4, 4, 4.0, 0.0))
    bar.note("done")
    err = capsys.readouterr().err
    first = "\rstress test [#######.......................] 1/4 ETA   3.0s"
    assert err.startswith(first + "\r" + " " * (len(first) - 1) + "\rscenario ice_storm_2008\n" + first)
    assert err.endswith("] 4/4 ETA   0.0s\ndone\n")
    quiet = ProgressBar("x", enabled=False)
    quiet(Progress(1, 2, 0.1, 0.1))
    assert capsys.readouterr().err == ""
