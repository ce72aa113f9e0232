"""The accounts review through the API: a "/" in a level name is a 422 problem naming the row and column (it
was a 500 from the accounts), and the accounts rows carry the harvest, the sink's parts, the parameter sds'
intervals and the Fang fallback, with the carbon methods in the provenance."""

from __future__ import annotations

import json

import numpy as np

from tests.api.test_api_flows import assert_problem
from tests.conftest import make_frame


def test_a_separator_in_a_level_name_is_a_422_naming_row_and_column(env):
    c, h = env.client, env.h("bureau")
    df = make_frame(12, seed=3)
    # a township "甲镇/乙乡" whose label a township "乙乡" of a county "...甲镇" would repeat: only a clash is refused
    df.loc[4, "township"] = "甲镇/乙乡"
    df.loc[5, ["county", "township"]] = [df.loc[4, "county"] + "/甲镇", "乙乡"]
    r = c.post("/v1/portfolios", headers=h, files={"file": ("slash.csv", df.to_csv(index=False).encode(), "text/csv")},
               data={"name": "slash"})
    body = assert_problem(r, 422, "invalid-portfolio")
    assert [(e["row"], e["column"], e["value"]) for e in body["errors"]] == [(5, "township", "甲镇/乙乡"),
                                                                              (6, "county", df.loc[5, "county"])]
    assert "'/'" in body["errors"][0]["reason"]
    r = c.post("/v1/portfolios", headers=h, json={"name": "slash", "parcels": json.loads(df.to_json(orient="records"))})
    assert [(e["row"], e["column"]) for e in assert_problem(r, 422, "invalid-portfolio")["errors"]] == [
        (5, "township"), (6, "county")]
    # a "/" no other group's label repeats is a name like any other (portfolios stored before the check stay valid)
    ok = make_frame(12, seed=3)
    ok.loc[4, "village"] = "一村/二组"
    r = c.post("/v1/portfolios", headers=h, files={"file": ("ok.csv", ok.to_csv(index=False).encode(), "text/csv")},
               data={"name": "slash-ok"})
    assert r.status_code == 201, r.text


def test_accounts_rows_carry_the_sinks_parts_intervals_and_fallback(env):
    c, h, pid = env.client, env.h("bureau"), env.portfolios[("bureau", "a")]
    r = c.get(f"/v1/portfolios/{pid}/accounts?paths=32&seed=4&limit=500", headers=h)
    assert r.status_code == 200, r.text
    d = r.json()
    rows = d["rows"]["items"]
    top = next(x for x in rows if x["level"] == "portfolio")
    parts = top["expected_growth_tco2e_per_yr"] - top["expected_mortality_tco2e_per_yr"] - \
        top["expected_loss_tco2e_per_yr"] - top["expected_harvest_tco2e_per_yr"]
    assert np.isclose(top["expected_sink_tco2e_per_yr"], parts, rtol=0, atol=1e-6)
    for fig in ("sink", "loss", "harvest"):
        k = f"expected_{fig}_tco2e_per_yr_parameter_sd"
        assert all(x[f"{k}_ci95_low"] <= x[k] + 1e-9 <= x[f"{k}_ci95_high"] + 2e-9 for x in rows if x[k] is not None)
    assert 0 <= top["stock_fang_fallback_share"] <= 1
    assert d["provenance"]["sink_carbon_method"] == "bef"
    assert "stock_fang_fallback_species" in d["provenance"]
    assert "without harvest" in d["units"]["potential_sink_tco2e_per_yr"]
