"""Parameter sets are data: validated on load, hashed, copyable to another region."""

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from finance_engine.simulation import simulate
from models.parameters import ParameterError, available_regions, load_parameters
from models.portfolio import validate_frame
from tests.conftest import make_frame

LISHUI = Path(__file__).resolve().parent.parent / "models" / "parameters" / "lishui.yaml"
REQUIRED_SPECIES = ["chinese_fir", "masson_pine", "other_pines", "cryptomeria", "mixed_conifer",
                    "mixed_conifer_broadleaf", "evergreen_broadleaf", "hard_broadleaf", "oaks", "moso_bamboo"]


def test_lishui_loads_with_version_and_hash(params):
    assert "lishui" in available_regions()
    assert params.version.startswith("lishui-")
    assert params.sha256 == hashlib.sha256(LISHUI.read_bytes()).hexdigest()
    assert set(REQUIRED_SPECIES) <= set(params.species_ids)
    for sid in REQUIRED_SPECIES:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", sid)


def test_chinese_names_are_aliases(params):
    for zh, sid in (("杉木", "chinese_fir"), ("马尾松", "masson_pine"), ("毛竹", "moso_bamboo"), ("柳杉", "cryptomeria"),
                    ("栎类", "oaks"), ("针阔混", "mixed_conifer_broadleaf")):
        assert params.species_aliases[zh] == sid


def test_every_number_is_sourced_and_labelled():
    raw = yaml.safe_load(LISHUI.read_text(encoding="utf-8"))
    refs = raw["references"]
    seen = 0

    def visit(node, path):
        nonlocal seen
        if isinstance(node, dict):
            if "value" in node and isinstance(node["value"], (int, float)):
                seen += 1
                assert node.get("source") in refs, f"{path}: source {node.get('source')!r} not in references"
                assert node.get("confidence") in ("read", "derived", "memory", "assumption"), path
            for k, v in node.items():
                visit(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                visit(v, f"{path}[{i}]")

    visit(raw, "")
    assert seen > 100


def _write(tmp_path, mutate):
    raw = yaml.safe_load(LISHUI.read_text(encoding="utf-8"))
    mutate(raw)
    p = tmp_path / "region.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return p


def test_a_copy_models_another_region(tmp_path):
    def mutate(raw):
        raw["region"] = "quzhou"
        raw["version"] = "quzhou-0.1"
        raw["species"]["chinese_fir"]["growth"]["asymptote_m3_per_ha"]["II"] = 280
    p = _write(tmp_path, mutate)
    other = load_parameters(p)
    assert other.region == "quzhou" and other.sha256 != load_parameters().sha256
    pf = validate_frame(make_frame(20), other)
    r = simulate(pf, other, years=2, paths=32, seed=1)
    assert r.provenance["region"] == "quzhou" and r.provenance["parameter_sha256"] == other.sha256


@pytest.mark.parametrize("mutate,needle", [
    (lambda r: r["species"]["chinese_fir"]["bef"].update(value=9.0), "bef"),
    (lambda r: r["species"]["chinese_fir"]["wood_density_t_per_m3"].update(source="nowhere"), "nowhere"),
    (lambda r: r["species"]["masson_pine"]["growth"]["asymptote_m3_per_ha"].pop("III"), "III"),
    (lambda r: r["species"]["oaks"]["carbon_fraction"].update(confidence="guess"), "confidence"),
    (lambda r: r["crediting"]["buffer_fraction"].update(value=1.5), "buffer_fraction"),
    (lambda r: r["perils"]["fire"].update(base_burn_probability_per_year={"value": -1, "source": "domain_doc",
                                                                          "confidence": "assumption"}), "fire"),
    (lambda r: r["perils"].update(meteor={"enabled": True}), "meteor"),
    (lambda r: r.pop("references"), "references"),
    (lambda r: r["peril_uncertainty"]["typhoon"]["frequency_log_sd"].update(value=-0.1), "frequency_log_sd"),
    (lambda r: r["peril_uncertainty"]["fire"]["frequency_log_sd"].update(value=2.0), "frequency_log_sd"),
    (lambda r: r["peril_uncertainty"].update(cascades=r["peril_uncertainty"]["fire"]), "cascades"),
    (lambda r: r["peril_uncertainty"].update(meteor=r["peril_uncertainty"]["fire"]), "meteor"),
    (lambda r: r["peril_uncertainty"]["pine_wilt"]["severity_log_sd"].update(value=-0.2), "severity_log_sd"),
    (lambda r: r["peril_uncertainty"]["fire"].update(spread_log_sd=0.1), "spread_log_sd"),
    # spread rates belong to a peril with a landscape process, and lie in the log-sd range
    (lambda r: r["peril_uncertainty"]["typhoon"].update(
        local_transmission_log_sd=r["peril_uncertainty"]["pine_wilt"]["local_transmission_log_sd"]),
     "typhoon.local_transmission_log_sd"),
    (lambda r: r["peril_uncertainty"]["pine_wilt"]["long_distance_jump_log_sd"].update(value=1.6),
     "long_distance_jump_log_sd"),
    # carbon constants: finite and physical; management multipliers on hazards are not negative
    (lambda r: r["carbon"]["co2_per_c"].update(value=float("nan")), "co2_per_c"),
    (lambda r: r["carbon"]["co2_per_c"].update(value=-3.67), "co2_per_c"),
    (lambda r: r["carbon"]["fang_carbon_fraction"].update(value=5.0), "fang_carbon_fraction"),
    (lambda r: r["species"]["chinese_fir"]["bef"].update(value=float("inf")), "bef"),
    (lambda r: r["management"]["fire_protection"]["basic"].update(value=-5.0), "management.fire_protection.basic"),
])
def test_invalid_files_name_file_and_field(tmp_path, mutate, needle):
    p = _write(tmp_path, mutate)
    with pytest.raises(ParameterError) as exc:
        load_parameters(p)
    assert str(p) in str(exc.value) and needle in str(exc.value)


def test_unknown_region_and_bad_yaml(tmp_path):
    with pytest.raises(ParameterError, match="no parameter set"):
        load_parameters("atlantis")
    bad = tmp_path / "bad.yaml"
    bad.write_text("region: [unclosed", encoding="utf-8")
    with pytest.raises(ParameterError, match="not a valid UTF-8 YAML"):
        load_parameters(bad)


def test_read_data_file_names_the_file(tmp_path):
    from models._yaml import DataFileError, read_data_file

    good = tmp_path / "a.yaml"
    good.write_text("x: 1\n", encoding="utf-8")
    assert read_data_file(good)[0] == {"x": 1}
    js = tmp_path / "a.json"
    js.write_text('{"x": 2}', encoding="utf-8")
    assert read_data_file(js)[0] == {"x": 2}
    # a repeated key is refused (YAML and JSON keep the last one silently: a terms file with term_years twice)
    twice = tmp_path / "twice.yaml"
    twice.write_text("terms:\n  term_years: 3\n  amount_cny: 1\n  term_years: 10\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"(?s)twice.yaml.*duplicate key 'term_years' \(first on line 2\)"):
        read_data_file(twice)
    js.write_text('{"x": 2, "y": {"z": 1, "z": 2}}', encoding="utf-8")
    with pytest.raises(DataFileError, match=r"(?s)a.json.*duplicate key 'z'"):
        read_data_file(js)
    # merge keys may be overridden
    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  x: 5\n", encoding="utf-8")
    assert read_data_file(merged)[0]["use"] == {"x": 5, "y": 2}
    bad = tmp_path / "b.json"
    bad.write_text("{nope", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"b\.json: not valid JSON"):
        read_data_file(bad)
    with pytest.raises(DataFileError, match="cannot read scenario file"):
        read_data_file(tmp_path / "missing.yaml", "scenario file")
