"""Issuance risk (finance_engine/issuance.py) against its closed forms, and what a lender sees of it."""

import math

import numpy as np
import pytest

from finance_engine.issuance import IssuanceRisk, load_issuance_risk

N = 40_000


def _issued(years=8, n=N, amount=100.0):
    return np.full((years, n), amount)


def test_verification_failures_lose_their_share():
    f = 0.2
    out = IssuanceRisk(verification_failure_probability=f).apply(_issued(), np.arange(N), 3)
    kept = (out > 0).mean(axis=1)  # each period's credits are issued whole or lost whole
    assert set(np.unique(out)) <= {0.0, 100.0}
    assert np.all(np.abs(kept - (1 - f)) < 4 * math.sqrt(f * (1 - f) / N))


def test_the_methodology_change_arrives_as_a_poisson_process():
    """Row y (issued at the end of year y + 1) is cut by the factor when the change arrived before:
    with probability 1 - exp(-m (y + 1)); and a lender sees the change from the end of its year on."""
    m, factor = 0.1, 0.4
    risk = IssuanceRisk(methodology_change_rate_per_year=m, methodology_change_issuance_factor=factor)
    r = risk.realise(_issued(), np.arange(N), 5)
    for y in range(8):
        p_cut = 1 - math.exp(-m * (y + 1))
        cut = (r.credits[y] == 100.0 * factor).mean()
        assert abs(cut - p_cut) < 4 * math.sqrt(p_cut * (1 - p_cut) / N)
        # known by the end of year y (the change at or before it) implies this and every later row is cut
        known = r.changed_by(y)
        assert np.all(r.credits[y:, known] == 100.0 * factor)
        assert abs(known.mean() - (1 - math.exp(-m * y))) < 4 * math.sqrt(0.25 / N)
    assert not r.changed_by(0).any()


def test_delayed_credits_are_pending_until_issued():
    """When every issuance slips two years, what is pending at the end of year t is what the next two
    years issue, and the last two years' credits fall beyond the horizon."""
    years, d = 8, 2
    risk = IssuanceRisk(delay_probability=1 - 1e-12, delay_years=d)
    q = _issued(years, 1000) * np.arange(1, years + 1)[:, None]  # row y issues 100 (y + 1)
    r = risk.realise(q, np.arange(1000), 9)
    assert np.array_equal(r.credits[:d], np.zeros((d, 1000)))
    assert np.array_equal(r.credits[d:], q[:-d])
    for t in range(years + 1):
        assert np.array_equal(r.pending_tco2e[t], r.credits[t:t + d].sum(axis=0)), t
    # with no delays nothing is ever pending
    none = IssuanceRisk(verification_failure_probability=0.3).realise(q, np.arange(1000), 9)
    assert not none.pending_tco2e.any()


def test_draws_are_keyed_by_path_and_apply_is_the_realised_credits():
    risk = load_issuance_risk()
    q = _issued(6, 512)
    full = risk.realise(q, np.arange(512), 11)
    part = risk.realise(q[:, 100:164], np.arange(100, 164), 11)
    assert np.array_equal(part.credits, full.credits[:, 100:164])
    assert np.array_equal(part.pending_tco2e, full.pending_tco2e[:, 100:164])
    assert np.array_equal(risk.apply(q, np.arange(512), 11), full.credits)
    with pytest.raises(ValueError, match="one column per path id"):
        risk.apply(q, np.arange(10), 11)


@pytest.mark.parametrize("change, field", [
    (("verification_failure_probability", "confidence", "guess"), "confidence"),
    (("delay_probability", "source", "no_such_ref"), "no_such_ref"),
    (("delay_years", "value", 1.9), "whole number"),
    (("methodology_change_rate_per_year", "value", float("nan")), "methodology_change_rate_per_year"),
])
def test_a_bad_issuance_file_is_refused_naming_the_field(tmp_path, change, field):
    """Labels as everywhere (read, derived, memory, assumption), sources from the references, whole delays."""
    import yaml

    from finance_engine.issuance import ISSUANCE_PATH

    data = yaml.safe_load(ISSUANCE_PATH.read_text(encoding="utf-8"))
    block, key, value = change
    data[block][key] = value
    p = tmp_path / "issuance.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError, match=field) as err:
        load_issuance_risk(p)
    assert str(p) in str(err.value) or p.name in str(err.value)


def test_a_broken_issuance_file_names_the_file(tmp_path):
    p = tmp_path / "issuance.yaml"
    p.write_text("verification_failure_probability: {value: [\n", encoding="utf-8")
    with pytest.raises(ValueError, match="issuance.yaml"):
        load_issuance_risk(p)
    with pytest.raises(ValueError, match="missing.yaml"):
        load_issuance_risk(tmp_path / "missing.yaml")


def test_the_issuance_model_is_cached_per_process_and_reloaded_when_its_file_changes(tmp_path):
    """Loaded once per process (a valuation that loaded it itself parsed two YAML files each time), and loaded
    again when the file changes on disk."""
    import os

    import yaml

    from finance_engine.issuance import ISSUANCE_PATH

    p = tmp_path / "issuance.yaml"
    p.write_bytes(ISSUANCE_PATH.read_bytes())
    first = load_issuance_risk(p)
    assert load_issuance_risk(p) is first
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    data["verification_failure_probability"]["value"] = 0.123
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a new stamp even within one clock tick
    again = load_issuance_risk(p)
    assert again is not first and again.verification_failure_probability == pytest.approx(0.123)
