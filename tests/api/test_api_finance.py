"""Finance endpoints against direct finance_engine calls with the same seed (identical numbers):
collateral valuations (inline terms and registered loans, at once and as jobs, memo download),
insurance quotes (inline cover and registered policies, quote slip), layer pricing on uploaded loss
tables (against a hand-computed table too), stress tests (job, tables, accounts, report, workbook),
and bad input -> problem+json 4xx naming the field. Role and tenant checks are in test_api_access."""

from __future__ import annotations

import io
import json
import time

import pandas as pd
import pytest

from api.compute import clean, layer_result_dict
from finance_engine.collateral import value_collateral
from finance_engine.insurance import cover_from_dict, price_layer, quote
from finance_engine.insurance.quote import LayerSpec
from finance_engine.stress.accounts import scenario_accounts
from finance_engine.stress.run import StressSettings, run_stress_test
from finance_engine.stress.scenarios import load_scenario
from models.parameters import load_parameters
from models.portfolio import validate_frame
from tests.api.conftest import csv_bytes, upload
from tests.api.test_api_flows import assert_problem, wait_job
from tests.conftest import make_frame

TERMS = {"amount_cny": 200_000.0, "term_years": 3, "interest_rate": 0.045, "crediting_horizon_years": 10}


@pytest.fixture(scope="module", params=["sqlite"])
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def params():
    return load_parameters("lishui")


@pytest.fixture(scope="module")
def pf20(params):
    return validate_frame(make_frame(20, seed=7), params, source="p.csv")


@pytest.fixture(scope="module")
def ids(env):
    """A 20-parcel portfolio for the bank, insurer and bureau tenants a."""
    return {r: upload(env.client, env.h(r), csv_bytes(20, seed=7), name="pf20") for r in ("bank", "insurer", "bureau")}


def numbers(d: dict) -> dict:
    """A result without its code version (a commit by someone else between two runs changes it)."""
    return {**d, "provenance": {k: v for k, v in d["provenance"].items() if k != "code_version"}}


# ---- collateral -----------------------------------------------------------------------------------
def test_collateral_at_once_equals_the_engine(env, ids, params, pf20):
    r = env.client.post("/v1/collateral-valuations", headers=env.h("bank"),
                        json={"portfolio_id": ids["bank"], "terms": TERMS, "paths": 200, "seed": 11})
    assert r.status_code == 201, r.text
    got = r.json()
    assert r.headers["location"] == f"/v1/collateral-valuations/{got['id']}"
    direct = clean(value_collateral(pf20, params, TERMS, paths=200, seed=11, attribution=False).to_dict())
    assert numbers(got["result"]) == numbers(direct)
    assert got["audit"]["seed"] == 11 and got["audit"]["parameter_sha256"] == params.sha256
    again = env.client.get(got["reports"][0].rsplit("/", 1)[0], headers=env.h("bank")).json()
    assert again["result"] == got["result"]
    audit = env.client.get(f"/v1/audit?resource_id={got['id']}", headers=env.h("bank")).json()["items"]
    assert audit[0]["action"] == "collateral.create" and audit[0]["detail"]["seed"] == 11


def test_registered_loan_valued_by_id(env, ids, params, pf20):
    pledged = list(pf20.parcel_id[:8])
    loan = env.client.post(f"/v1/portfolios/{ids['bank']}/loans", headers=env.h("bank"),
                           json={"name": "Fir pledge", "terms": {"amount_cny": 150_000, "term_years": 2, "rate": 0.05,
                                                                 "parcel_ids": pledged}}).json()
    r = env.client.post("/v1/collateral-valuations", headers=env.h("bank"),
                        json={"loan_id": loan["id"], "terms": {"crediting_horizon_years": 8}, "paths": 128, "seed": 3,
                              "sensitivities": False})
    assert r.status_code == 201, r.text
    assert r.json()["instrument_id"] == loan["id"] and r.json()["portfolio_id"] == ids["bank"]
    direct = value_collateral(pf20, params, {"amount_cny": 150_000.0, "term_years": 2, "interest_rate": 0.05,
                                             "crediting_horizon_years": 8}, parcel_ids=pledged, paths=128, seed=3,
                              attribution=False, sensitivities=False)
    assert numbers(r.json()["result"]) == numbers(clean(direct.to_dict()))
    assert r.json()["result"]["value_today"]["pledged_parcels"] == 8


@pytest.mark.parametrize("terms,extra,field", [
    ({**TERMS, "term_years": 12}, {}, "body/terms/term_years"),                       # beyond the crediting horizon
    ({**TERMS, "ltv_trigger": 0.5, "pledge_rate": 0.6}, {}, "body/terms/ltv_trigger"),  # trigger below pledge rate
    ({**TERMS, "amount_cny": -5}, {}, "body/terms/amount_cny"),                        # negative amount
    (TERMS, {"parcel_ids": ["nope-1"]}, "body/parcel_ids"),
    ({"amount_cny": 1e5}, {}, "body/terms/term_years"),                                # missing without a loan
    ({**TERMS, "price_scenario": "no_such_path"}, {}, "body/terms/price_scenario"),
])
def test_bad_loan_terms_are_422_naming_the_field(env, ids, terms, extra, field):
    r = env.client.post("/v1/collateral-valuations", headers=env.h("bank"),
                        json={"portfolio_id": ids["bank"], "terms": terms, "paths": 64, **extra})
    body = assert_problem(r, 422)
    assert field in [e["field"] for e in body["errors"]], body


def test_fractional_registered_term_is_422(env, ids):
    # refused when the loan is registered (the engine values whole years), not at each valuation of it
    body = assert_problem(env.client.post(f"/v1/portfolios/{ids['bank']}/loans", headers=env.h("bank"),
                                          json={"terms": {"amount_cny": 1e5, "term_years": 2.5, "rate": 0.05}}), 422)
    assert body["errors"][0]["field"] == "body/terms/term_years"


def test_collateral_job_gives_the_same_numbers_and_a_memo(env, ids):
    body = {"portfolio_id": ids["bank"], "terms": TERMS, "paths": 96, "seed": 21, "name": "Memo loan"}
    sync = env.client.post("/v1/collateral-valuations", headers=env.h("bank"), json=body).json()
    r = env.client.post("/v1/collateral-valuations", headers=env.h("bank"), json={**body, "mode": "job"})
    assert r.status_code == 202 and r.headers["location"].startswith("/v1/jobs/")
    job = wait_job(env.client, env.h("bank"), r.json()["id"])
    assert job["status"] == "succeeded", job
    res = env.client.get(f"/v1/jobs/{job['id']}/result", headers=env.h("bank")).json()
    assert res["kind"] == "collateral" and res["job_id"] == job["id"]
    assert numbers(res["result"]) == numbers(sync["result"])
    memo = env.client.get(f"/v1/collateral-valuations/{sync['id']}/memo", headers=env.h("bank"))
    assert memo.status_code == 200 and memo.headers["content-type"].startswith("text/html")
    assert "attachment" in memo.headers["content-disposition"]
    assert "Memo loan" in memo.text and "data:image/png;base64," in memo.text
    assert env.client.get(f"/v1/collateral-valuations/{sync['id']}/memo", headers=env.h("bank")).content == memo.content


def test_role_limit_applies_to_collateral(tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.security import create_key, create_tenant
    from tests.api.conftest import test_settings

    app = create_app(test_settings(f"sqlite:///{tmp_path / 'l.sqlite'}", compute_workers=0,
                                   role_max_cells={"bank": 10 * 64 * 10, "insurer": 0, "bureau": 0, "admin": 0}))
    with TestClient(app) as c:
        with app.state.db.session() as s:
            h = {"Authorization": f"Bearer {create_key(s, create_tenant(s, 'b', 'bank'))[1]}"}
        pid = upload(c, h, csv_bytes(10))
        ok = c.post("/v1/collateral-valuations", headers=h,
                    json={"portfolio_id": pid, "terms": TERMS, "paths": 64, "sensitivities": False})
        assert ok.status_code == 201, ok.text
        over = c.post("/v1/collateral-valuations", headers=h, json={"portfolio_id": pid, "terms": TERMS, "paths": 65})
        assert assert_problem(over, 422, "limit-exceeded")["cells"] == 10 * 65 * 10


# ---- insurance ------------------------------------------------------------------------------------
def test_quote_equals_the_engine_and_slip(env, ids, params, pf20):
    cover = {"kind": "stock-loss", "price_cny_per_tco2e": 60.0, "perils": ["fire", "pine_wilt"],
             "deductible": {"amount": 1000.0, "unit": "cny", "basis": "annual"}}
    layers = [{"attachment_cny": 500.0, "limit_cny": 20_000.0}]
    r = env.client.post("/v1/quotes", headers=env.h("insurer"),
                        json={"portfolio_id": ids["insurer"], "cover": cover, "paths": 300, "seed": 4,
                              "layers": layers, "name": "Fire and pine wilt"})
    assert r.status_code == 201, r.text
    q = quote(cover_from_dict(cover), pf20, params, paths=300, seed=4, layers=[LayerSpec(500.0, 20_000.0)])
    assert numbers(r.json()["result"]) == numbers(clean(q.to_dict()))
    slip = env.client.get(f"/v1/quotes/{r.json()['id']}/slip", headers=env.h("insurer"))
    assert slip.status_code == 200 and slip.headers["content-type"].startswith("text/html")
    assert "Fire and pine wilt" in slip.text and "data:image/png;base64," in slip.text


def test_registered_policy_quoted_by_id(env, ids, params, pf20):
    pol = env.client.post(f"/v1/portfolios/{ids['insurer']}/policies", headers=env.h("insurer"),
                          json={"terms": {"sum_insured_cny": 5e5, "perils": ["fire", "typhoon"],
                                          "deductible_cny": 2000, "limit_cny": 4e5}}).json()
    r = env.client.post("/v1/quotes", headers=env.h("insurer"), json={"policy_id": pol["id"], "paths": 200, "seed": 9})
    assert r.status_code == 201, r.text
    from finance_engine.insurance import Deductible, StockLossCover
    from finance_engine.price import load_price_model

    cover = StockLossCover(load_price_model().start_price_cny_per_tco2e, ("fire", "typhoon"),
                           Deductible(2000.0, "cny", "annual"), 4e5)
    direct = quote(cover, pf20, params, paths=200, seed=9)
    assert numbers(r.json()["result"]) == numbers(clean(direct.to_dict()))


@pytest.mark.parametrize("cover,field", [
    ({"kind": "price-floor"}, "strike_cny_per_tco2e"),
    ({"kind": "sink-index", "perils": ["fire"]}, "perils"),
    ({"kind": "stock-loss", "deductible": {"amount": 2, "unit": "stock_fraction"}}, "deductible"),
])
def test_bad_cover_is_422(env, ids, cover, field):
    r = env.client.post("/v1/quotes", headers=env.h("insurer"), json={"portfolio_id": ids["insurer"], "cover": cover})
    assert_problem(r, 422)
    assert field in r.text


def _elt() -> pd.DataFrame:
    return pd.DataFrame({"year": [0, 0, 3], "event_id": [1, 2, 1], "loss": [100.0, 50.0, 500.0]})


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json", "inline"])
def test_layer_pricing_on_uploaded_tables(env, fmt):
    elt = _elt()
    terms = {"n_years": 10, "attachment": 80, "limit": 300, "basis": "occurrence"}
    if fmt == "inline":
        r = env.client.post("/v1/layer-pricing", headers=env.h("insurer"),
                            json={"rows": elt.to_dict(orient="records"), **terms})
    else:
        if fmt == "csv":
            data = elt.to_csv(index=False).encode()
        elif fmt == "parquet":
            buf = io.BytesIO(); elt.to_parquet(buf, index=False); data = buf.getvalue()
        else:
            data = elt.to_json(orient="records").encode()
        r = env.client.post("/v1/layer-pricing", headers=env.h("insurer"),
                            files={"file": (f"elt.{fmt}", data, "application/octet-stream")},
                            data={k: str(v) for k, v in terms.items()})
    assert r.status_code == 201, r.text
    got = r.json()["result"]
    # by hand: year 0 events 100 and 50 cede 20 and 0; year 3 cedes min(420, 300) = 300 -> 320 / 10 years
    assert got["expected_loss"] == pytest.approx(32.0, abs=1e-12)
    assert got["prob_attachment"] == pytest.approx(0.2) and got["prob_exhaustion"] == pytest.approx(0.1)
    direct = layer_result_dict(price_layer(elt, 10, 80, 300, "occurrence"))
    assert {k: got[k] for k in direct} == direct


@pytest.mark.parametrize("csv,field", [
    (b"year,event_id,loss\n0,1,-100\n", "loss"),
    (b"year,event_id,loss\n12,1,100\n", "year"),
    (b"year,loss\n0,100\n", "event_id"),
    (b"\x00\x01garbage", "file"),
])
def test_bad_loss_tables_are_422(env, csv, field):
    r = env.client.post("/v1/layer-pricing", headers=env.h("insurer"),
                        files={"file": ("elt.csv" if field != "file" else "elt.parquet", csv, "text/csv")},
                        data={"n_years": "10", "attachment": "0"})
    assert_problem(r, 422)
    assert field in r.text


def test_layer_pricing_bad_terms_and_media(env):
    r = env.client.post("/v1/layer-pricing", headers=env.h("insurer"), json={"rows": [], "n_years": 0, "attachment": 1})
    assert_problem(r, 422, "validation-error")
    r = env.client.post("/v1/layer-pricing", headers={**env.h("insurer"), "Content-Type": "text/plain"}, content=b"x")
    assert_problem(r, 415)
    empty = env.client.post("/v1/layer-pricing", headers=env.h("insurer"),
                            json={"rows": [], "n_years": 5, "attachment": 1, "limit": 2})
    assert empty.status_code == 201 and empty.json()["result"]["expected_loss"] == 0.0  # an empty table: no loss


# ---- stress tests -----------------------------------------------------------------------------------
INLINE = {"name": "fire_x3", "version": "1", "title": "Fire hazard x3", "hazard": {"fire": 3.0}}


def test_stress_test_job_equals_the_engine(env, ids, params, pf20):
    body = {"portfolio_id": ids["bureau"], "scenarios": ["severe_fire_weather"], "inline_scenarios": [INLINE],
            "years": 2, "paths": 32, "seed": 5, "levels": ["portfolio", "county"], "name": "City test"}
    r = env.client.post("/v1/stress-tests", headers=env.h("bureau"), json=body)
    assert r.status_code == 202, r.text
    job = wait_job(env.client, env.h("bureau"), r.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job
    sid = job["result_id"]
    st = StressSettings(years=2, paths=32, seed=5, levels=("portfolio", "county"))
    scns = [load_scenario("severe_fire_weather"), _inline_scenario()]
    direct = run_stress_test(pf20, params, scns, settings=st)
    d = clean(direct.to_dict())
    got = env.client.get(f"/v1/stress-tests/{sid}", headers=env.h("bureau")).json()
    assert got["result"]["portfolio"] == d["portfolio"]
    assert got["result"]["tables"]["horizon"] == len(d["horizon"])
    rows, off = [], 0
    while off is not None:
        p = env.client.get(f"/v1/stress-tests/{sid}/tables/horizon?limit=500&offset={off}",
                           headers=env.h("bureau")).json()
        rows += p["items"]
        off = p["next_offset"]
        # every page says what made its rows
        assert p["provenance"]["seed"] == st.seed and p["provenance"]["parameter_sha256"] == params.sha256
        assert p["provenance"]["model_version"] == got["result"]["provenance"]["model_version"]
    assert rows == d["horizon"]
    # accounts of a scenario, as a table and a tree, equal the engine's
    acc = clean(scenario_accounts(pf20, params, _inline_scenario(), st).to_dict("county"))
    t = env.client.get(f"/v1/stress-tests/{sid}/accounts?scenario=fire_x3&level=county&limit=500",
                       headers=env.h("bureau")).json()
    assert t["rows"]["items"] == acc["rows"]
    tree = env.client.get(f"/v1/stress-tests/{sid}/accounts?scenario=baseline&format=tree",
                          headers=env.h("bureau")).json()["tree"]
    assert tree == clean(scenario_accounts(pf20, params, "baseline", st).tree())
    rep = env.client.get(f"/v1/stress-tests/{sid}/report", headers=env.h("bureau"))
    assert rep.status_code == 200 and "City test" in rep.text and rep.headers["content-type"].startswith("text/html")
    wb = env.client.get(f"/v1/stress-tests/{sid}/workbook", headers=env.h("bureau"))
    assert wb.status_code == 200
    assert set(pd.read_excel(io.BytesIO(wb.content), sheet_name=None)) >= {"scenarios", "portfolio", "provenance"}
    assert_problem(env.client.get(f"/v1/stress-tests/{sid}/accounts?scenario=nope", headers=env.h("bureau")), 404)


def _inline_scenario():
    from api.compute import load_inline_scenario

    return load_inline_scenario(0, INLINE)


@pytest.mark.parametrize("inline,field", [
    ({**INLINE, "hazard": {"fire": 500}}, "hazard"),
    ({**INLINE, "hazard": {"meteor": 2}}, "meteor"),
    ({**INLINE, "includes": ["/etc/passwd"]}, "includes"),
    ("name: [unclosed", "YAML"),
    ({**INLINE, "forced_events": [{"year": 1, "peril": "typhoon"}]}, "track"),
])
def test_bad_inline_scenarios_are_422(env, ids, inline, field):
    r = env.client.post("/v1/stress-tests", headers=env.h("bureau"),
                        json={"portfolio_id": ids["bureau"], "inline_scenarios": [inline], "years": 1, "paths": 8})
    assert_problem(r, 422)
    assert field in r.text and "/tmp" not in r.text


def test_unknown_library_scenario_and_bad_registry_are_422(env, ids):
    r = env.client.post("/v1/stress-tests", headers=env.h("bureau"),
                        json={"portfolio_id": ids["bureau"], "scenarios": ["no_such_scenario"]})
    assert_problem(r, 422)
    assert "no_such_scenario" in r.text
    r = env.client.post("/v1/stress-tests", headers=env.h("bureau"),
                        json={"portfolio_id": ids["bureau"], "registry": {"loans": [
                            {"id": "L1", "parcel_ids": ["x"], "terms": TERMS}]}})
    assert_problem(r, 422)
    assert "parcels not in the portfolio" in r.text


def test_small_stress_test_at_once_with_registered_loans(env, ids, params, pf20):
    env.client.post(f"/v1/portfolios/{ids['bureau']}/loans", headers=env.h("bureau"),
                    json={"terms": {"amount_cny": 1e5, "term_years": 2, "rate": 0.05}})
    r = env.client.post("/v1/stress-tests", headers=env.h("bureau"),
                        json={"portfolio_id": ids["bureau"], "scenarios": ["carbon_price_crash"], "years": 2,
                              "paths": 16, "seed": 8, "mode": "auto", "use_registered_loans": True,
                              "accounts": False, "footprints": False})
    assert r.status_code == 201, r.text
    res = r.json()["result"]
    assert len(res["loans"]) == 2 and {x["scenario"] for x in res["loans"]} == {"baseline", "carbon_price_crash"}
    assert_problem(env.client.get(f"/v1/stress-tests/{r.json()['id']}/accounts", headers=env.h("bureau")), 404)


def test_scenarios_list_the_stress_library_with_version_and_hash(env):
    import hashlib

    from finance_engine.stress.scenarios import LIBRARY_DIR, scenario_library

    items = env.client.get("/v1/scenarios?limit=500", headers=env.h("admin")).json()["items"]
    stress = {i["id"]: i for i in items if i["kind"] == "stress"}
    assert set(stress) == {f"stress.{n}" for n in scenario_library()}
    for n in scenario_library():
        raw = (LIBRARY_DIR / f"{n}.yaml").read_bytes()
        assert stress[f"stress.{n}"]["sha256"] == hashlib.sha256(raw).hexdigest()
        one = env.client.get(f"/v1/scenarios/stress.{n}", headers=env.h("admin")).json()
        assert one["content"]["version"] == load_scenario(n).version == stress[f"stress.{n}"]["version"]


def test_identical_requests_share_one_computation():
    import asyncio

    from api.compute import ResultCache

    calls = []

    async def compute():
        calls.append(1)
        await asyncio.sleep(0.05)
        return {"v": 1}

    async def failing():
        await asyncio.sleep(0.01)
        raise ValueError("terms: bad")

    async def main():
        rc = ResultCache(4)
        got = await asyncio.gather(*[rc.single_flight("k", compute) for _ in range(8)])
        assert got == [{"v": 1}] * 8 and len(calls) == 1
        assert await rc.single_flight("k", compute) == {"v": 1} and len(calls) == 1  # cached
        res = await asyncio.gather(*[rc.single_flight("bad", failing) for _ in range(3)], return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in res) and rc.get("bad") is None  # errors are not cached

    asyncio.run(main())


def test_a_request_that_finds_the_pool_idle_may_use_both_threads_and_jobs_keep_one():
    import asyncio
    import os
    import time

    from api.compute import ComputePool, task_threads

    pool = ComputePool(workers=2)
    try:
        pool.start()
        both = min(2, os.cpu_count() or 1)

        async def lone_then_loaded():
            lone = await pool.run(task_threads)
            job = pool.submit(time.sleep, 1.0)  # a background job holds one worker
            under_load = await pool.run(task_threads)
            busy = pool.busy
            job.result()
            return lone, under_load, busy

        lone, under_load, busy = asyncio.run(lone_then_loaded())
        assert lone == both and under_load == 1 and busy == 1  # the job was still running
        assert pool.submit(task_threads).result() == 1  # jobs run on one thread, idle pool or not
        for _ in range(50):  # the done callbacks run on the pool's thread just after the results
            if pool.busy == 0:
                break
            time.sleep(0.01)
        assert pool.busy == 0
        with pytest.raises(ZeroDivisionError):  # a failed task is counted out too
            pool.submit(divmod, 1, 0).result()
        time.sleep(0.05)
        assert pool.busy == 0 and asyncio.run(pool.run(task_threads)) == both
    finally:
        pool.shutdown()


def test_the_in_thread_pool_counts_its_tasks_and_runs_them_on_one_thread():
    import asyncio

    from api.compute import ComputePool, task_threads

    pool = ComputePool(workers=0)
    assert asyncio.run(pool.run(task_threads)) == 1 and pool.submit(task_threads).result() == 1
    with pytest.raises(ZeroDivisionError):
        asyncio.run(pool.run(divmod, 1, 0))
    assert pool.busy == 0


def test_work_outside_the_pool_counts_as_busy():
    import asyncio

    from api.compute import ComputePool, task_threads

    pool = ComputePool(workers=2)
    try:
        with pool.occupied():  # a simulation job in the server's job thread
            assert pool.busy == 1 and asyncio.run(pool.run(task_threads)) == 1
        assert pool.busy == 0
    finally:
        pool.shutdown()


def test_a_pool_whose_worker_died_is_replaced_for_later_tasks():
    import asyncio
    import os
    import signal
    import time

    from api.compute import ComputePool

    pool = ComputePool(workers=2)
    try:
        pool.start()
        first = pool._pool
        old_pids = set(first._processes)
        victim = asyncio.run(pool.run(os.getpid))
        os.kill(victim, signal.SIGKILL)  # as the kernel's out-of-memory killer would
        deadline = time.time() + 20
        pid = None
        while time.time() < deadline:  # the executor notices the death in the background
            try:
                pid = pool.submit(os.getpid).result(timeout=20)
            except Exception:  # noqa: BLE001 - a task caught in the breakage fails; later ones must not
                time.sleep(0.05)
                continue
            if pool._pool is not first:
                break
            time.sleep(0.05)  # the surviving old worker answered: the death is not noticed yet
        assert pool._pool is not first and pid not in old_pids  # a new pool with new workers
        assert asyncio.run(pool.run(os.getpid)) not in old_pids and pool.busy == 0
        # a new pool that breaks at once (workers that cannot start) is not replaced in a loop
        second = pool._pool
        for p in list(second._processes):
            os.kill(p, signal.SIGKILL)
        for _ in range(200):
            try:
                pool.submit(os.getpid).result(timeout=20)
            except Exception:  # noqa: BLE001
                pass
            if pool._pool is not second or second._broken:
                break
            time.sleep(0.05)
        with pytest.raises(Exception):
            pool.submit(os.getpid).result(timeout=20)  # within the back-off: fails fast
        assert pool._pool is second and pool.busy == 0
    finally:
        pool.shutdown()
