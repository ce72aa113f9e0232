"""POST /v1/layer-pricing on the engine's own event loss table, and on a year column that cannot index ``n_years``
simulated years (the review's case: the engine's years 0-29 of 64 paths sent as ``year`` with n_years 1,920 were
priced as 30 years of 64 events each, exit 201 with wrong figures)."""

from __future__ import annotations

import pytest

from finance_engine.insurance import price_layer
from tests.api.test_api_flows import assert_problem
from tests.test_layer_year_index import engine_elt


@pytest.fixture(scope="module", params=["sqlite"])
def backend(request):
    return request.param


def _post(env, elt, n_years):
    return env.client.post("/v1/layer-pricing", headers=env.h("insurer"),
                           files={"file": ("event_loss_table.csv", elt.to_csv(index=False).encode(), "text/csv")},
                           data={"n_years": str(n_years), "attachment": "50", "limit": "200"})


def test_the_engines_table_is_priced_on_its_simulated_year(env):
    elt = engine_elt()
    r = _post(env, elt, 160)
    assert r.status_code == 201, r.text
    got = r.json()["result"]
    direct = price_layer(elt, 160, 50.0, 200.0)
    assert got["expected_loss"] == pytest.approx(direct.expected_loss)
    assert got["prob_attachment"] == pytest.approx(direct.prob_attachment)
    assert got["columns"] == {"year": "sim_year", "event": "event_id", "loss": "loss_tco2e", "engine_table": True}
    # its errors count whole paths (10 years each; the table has no mc_block column), the probabilities' too
    assert got["years_per_block"] == 10 and got["independent_units"] == 16
    assert got["expected_loss_se"] == pytest.approx(direct.expected_loss_se)
    assert got["prob_attachment_se"] == pytest.approx(direct.mean_se(direct.annual_loss > 0))
    assert got["prob_exhaustion_se"] == pytest.approx(direct.mean_se(direct.annual_exhausted))


def test_a_table_of_each_paths_own_years_is_422_naming_the_column(env):
    elt = engine_elt()
    # the engine's years within each path, without its path and sim_year columns (as the review sent it)
    bare = elt[["year", "event_id", "loss_tco2e"]].rename(columns={"loss_tco2e": "loss"})
    body = assert_problem(_post(env, bare, 160), 422, "invalid-loss-table")
    assert "column 'year'" in body["detail"] and "event years all lie in 0-9, but n_years=160" in body["detail"]
    assert body["errors"] and body["errors"][0]["field"] in ("body/file", "body/n_years")
    # with its path column, a year index shared by paths is each path's own year
    body = assert_problem(_post(env, elt.drop(columns="sim_year").rename(columns={"loss_tco2e": "loss"}), 160), 422,
                          "invalid-loss-table")
    assert "holds the year within each path" in body["detail"]
    # the engine's table with an n_years that is no whole number of its paths
    body = assert_problem(_post(env, elt, 165), 422, "invalid-loss-table")
    assert "n_years=165 is not a whole number of the table's paths of 10 years" in body["detail"]
