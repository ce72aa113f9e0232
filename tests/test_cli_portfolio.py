"""``carbon-risk demo-portfolio`` and ``carbon-risk validate`` through the real entry point."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from api.cli import main
from models.demo import demo_portfolio_path
from models.parameters import PARAMETER_DIR
from models.portfolio import load_portfolio


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    paths = {}
    for suffix in ("csv", "parquet", "xlsx", "geojson"):
        paths[suffix] = d / f"demo.{suffix}"
        assert main(["demo-portfolio", "--parcels", "120", "--seed", "9", "-o", str(paths[suffix])]) == 0
    return paths


def test_demo_portfolio_writes_every_format_with_the_same_parcels(params, demo_files):
    frames = {k: load_portfolio(p, params).frame for k, p in demo_files.items()}
    assert len(frames["csv"]) == 120
    for k in ("parquet", "xlsx", "geojson"):
        pd.testing.assert_frame_equal(frames[k], frames["csv"], obj=k)
    doc = json.loads(demo_files["geojson"].read_text(encoding="utf-8"))
    assert doc["type"] == "FeatureCollection" and {f["geometry"]["type"] for f in doc["features"]} == {"Point"}


def test_demo_portfolio_is_deterministic_and_reproduces_the_shipped_file(capsys, tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    code, out, err = run(capsys, "demo-portfolio", "--parcels", "5000", "--seed", "2026", "-o", a)
    assert code == 0 and len(out.strip().splitlines()) == 1 and "5,000 parcels" in out
    assert run(capsys, "demo-portfolio", "-o", b)[0] == 0  # defaults are the shipped 5000 / 2026
    assert a.read_bytes() == b.read_bytes() == demo_portfolio_path().read_bytes()
    c = tmp_path / "c.csv"
    assert run(capsys, "demo-portfolio", "--parcels", "5000", "--seed", "2027", "-o", c)[0] == 0
    assert c.read_bytes() != a.read_bytes()


def test_demo_portfolio_json_summary(capsys, tmp_path):
    code, out, _ = run(capsys, "demo-portfolio", "--parcels", "50", "-o", tmp_path / "p.csv", "--format", "json")
    assert code == 0
    d = json.loads(out)
    assert d["parcels"] == 50 and d["seed"] == 2026 and d["area_ha"] > 0


@pytest.mark.parametrize("argv", [
    ["demo-portfolio", "-o", "{tmp}/p.txt"],
    ["demo-portfolio", "-o", "{tmp}/no/such/dir/p.csv"],
    ["demo-portfolio", "--parcels", "0", "-o", "{tmp}/p.csv"],
    ["demo-portfolio"],
])
def test_demo_portfolio_bad_input_is_one_line_exit_2(capsys, tmp_path, argv):
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_validate_clean_file_one_line_summary(capsys, demo_files):
    code, out, err = run(capsys, "validate", demo_files["csv"])
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    assert "OK, 120 parcels" in lines[0] and " ha; species: " in lines[0] and "chinese_fir" in lines[0]


def test_validate_clean_file_json(capsys, params, demo_files):
    code, out, _ = run(capsys, "validate", demo_files["xlsx"], "--format", "json")
    assert code == 0
    d = json.loads(out)
    pf = load_portfolio(demo_files["csv"], params)
    assert d["valid"] is True and d["parcels"] == 120
    assert d["area_ha"] == pytest.approx(float(pf.area_ha.sum()))
    assert d["species_counts"] == pf.frame["species_group"].value_counts().to_dict()


@pytest.fixture
def bad_csv(tmp_path, demo_files):
    df = pd.read_csv(demo_files["csv"], dtype=str, keep_default_na=False)
    df.loc[2, "species_group"] = "banana"
    df.loc[5, "area_ha"] = "-3"
    df.loc[9, "latitude"] = "north"
    df.loc[11, "parcel_id"] = df.loc[0, "parcel_id"]
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return path


def test_validate_bad_file_lists_every_problem_on_stderr(capsys, bad_csv):
    code, out, err = run(capsys, "validate", bad_csv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert lines[:4] == [
        f"{bad_csv}, data row 3 (row 4 counting the header), column 'species_group' (value 'banana'): unknown species group; known: "
        + lines[0].split("known: ")[1],
        f"{bad_csv}, data row 6 (row 7 counting the header), column 'area_ha' (value '-3'): area_ha must be positive (<= 1e6 ha)",
        f"{bad_csv}, data row 10 (row 11 counting the header), column 'latitude' (value 'north'): not a number",
        f"{bad_csv}, data row 12 (row 13 counting the header), column 'parcel_id' (value 'LS-000001'): duplicate parcel_id (first seen in row 1)",
    ]
    assert len(lines) == 5 and lines[4].startswith("carbon-risk: error: ") and "4 problem(s)" in lines[4]


def test_validate_bad_file_json_list(capsys, bad_csv):
    code, out, err = run(capsys, "validate", bad_csv, "--format", "json")
    assert code == 2
    probs = json.loads(out)
    assert [(p["row"], p["column"]) for p in probs] == [(3, "species_group"), (6, "area_ha"), (10, "latitude"),
                                                        (12, "parcel_id")]
    assert all(p["file"] == str(bad_csv) and p["reason"] for p in probs)
    assert probs[1]["value"] == "-3"


def test_validate_missing_or_unreadable_file(capsys, tmp_path):
    code, out, err = run(capsys, "validate", tmp_path / "none.csv")
    assert code == 2 and "file not found" in err and "Traceback" not in err
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"\xff\xfe\xff\xff\x00")
    code, out, err = run(capsys, "validate", binary)
    assert code == 2 and "neither UTF-8 nor GB18030" in err


def test_validate_parameter_files(capsys, tmp_path):
    code, out, _ = run(capsys, "validate", PARAMETER_DIR / "lishui.yaml")
    assert code == 0 and "OK, parameter set lishui" in out and len(out.strip().splitlines()) == 1
    text = (PARAMETER_DIR / "lishui.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("max_age_years: 100\n", "max_age_years: many\n", 1), encoding="utf-8")
    code, out, err = run(capsys, "validate", broken, "--format", "json")
    assert code == 2
    probs = json.loads(out)
    assert probs and all(p["file"] == str(broken) for p in probs)
    assert any("max_age_years" in (p["column"] or "") for p in probs)
    # --kind forces the parameter reading of a file with another suffix
    other = tmp_path / "params.txt"
    other.write_text("just: [a, list", encoding="utf-8")
    code, out, err = run(capsys, "validate", other, "--kind", "parameters")
    assert code == 2 and "not a valid UTF-8 YAML file" in err and "Traceback" not in err
