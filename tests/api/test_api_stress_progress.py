"""A stress-test job's progress covers all of its work (api/compute.py, ``StressPhases``): the scenario runs, the
result, the report, the Excel workbook, each scenario's accounts and the save. While the accounts run the
progress is strictly between 0 and 1 and moves, it never goes back, and it is 1.0 only when the job has
succeeded (it had stalled at the runs' share through the workbook and the accounts, and read 100 % before the
result was saved)."""

from __future__ import annotations

import time

import pytest

import api.compute
from api.compute import StressPhases, TaskProgress, pf_ref, task_stress
from tests.api.conftest import csv_bytes, make_tenants, new_database, test_settings, upload

BODY = {"scenarios": ["severe_fire_weather"], "years": 4, "paths": 256, "seed": 5,
        "levels": ["portfolio", "county", "township"], "name": "progress"}


class Recorder:
    """A progress channel that keeps every report with the time it came."""

    def __init__(self):
        self.items: list[tuple[float, float | None, float | None, str | None]] = []

    def put(self, item) -> None:
        self.items.append((time.perf_counter(), *item))


@pytest.fixture()
def fast_heartbeat(monkeypatch):
    monkeypatch.setattr(api.compute, "HEARTBEAT_S", 0.01)


def test_the_task_reports_through_every_phase_and_never_1(fast_heartbeat, tmp_path_factory, request):
    """The task's own reports: the fraction moves while the workbook and each scenario's accounts are computed
    (phases with no progress of their own), stays below 1.0 to the end (the save is the job's), and the engine's
    chunk lines are still there."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.db.models import PortfolioRow

    url = new_database("sqlite", tmp_path_factory, request)
    app = create_app(test_settings(url, compute_workers=0))
    with TestClient(app) as client:
        keys = make_tenants(app)
        pid = upload(client, {"Authorization": f"Bearer {keys[('bureau', 'a')]}"}, csv_bytes(50, seed=3))
        with app.state.db.session() as s:
            ref = pf_ref(s.get(PortfolioRow, pid))
    rec = Recorder()
    task_stress(ref, {**BODY, "accounts": True}, progress=rec, chunk_paths=32)
    notes = [(i, m) for i, (_, f, _, m) in enumerate(rec.items) if f is None]
    fractions = [(i, f) for i, (_, f, _, _) in enumerate(rec.items) if f is not None]
    assert fractions and all(0.0 <= f < 1.0 for _, f in fractions), fractions[-3:]
    assert max(f for _, f in fractions) > 0.9  # all but the save
    assert any(m and m.startswith("progress ") and m.endswith(" chunks") for _, _, _, m in rec.items)
    for name in ("baseline", "severe_fire_weather"):
        start = next(i for i, m in notes if m == f"accounts of {name}")
        end = next(i for i, (_, f, _, m) in enumerate(rec.items) if f is not None and m and m.startswith("accounts ")
                   and i > start)
        during = [f for i, f in fractions if start < i < end]
        assert len(set(during)) >= 2, (name, during)  # it moves while the accounts run
        assert 0 < min(during) and max(during) < rec.items[end][1] < 1.0
    k = next(k for k, (_, m) in enumerate(notes) if m == "writing the Excel workbook")
    wb, after = notes[k][0], notes[k + 1][0]
    assert len({f for i, f in fractions if wb < i < after}) >= 2  # it moves while the workbook is written
    assert notes[-1][1] == "saving the result"


def test_phases_never_pass_a_phase_end_before_it_ends(monkeypatch):
    """A phase without progress of its own creeps toward its end, slower and slower past its expected time, and
    reaches it only when it is done."""
    from finance_engine.simulation import Progress

    monkeypatch.setattr(api.compute, "HEARTBEAT_S", 0.005)
    rec = Recorder()
    phases = StressPhases(TaskProgress(rec), {"runs": 1.0, "slow": 0.02, "save": 1.0})
    phases.engine("runs")(Progress(1, 1, 0.1, 0.0))
    with phases.phase("slow", note="slow"):
        time.sleep(0.2)  # ten times its expected time
    fr = [f for _, f, _, _ in rec.items if f is not None]
    assert fr[0] == pytest.approx(1 / 2.02)  # the weights are the phases' expected seconds
    during, end = fr[1:-1], fr[-1]
    assert during and all(1 / 2.02 < f < end for f in during) and during == sorted(during)
    assert end == pytest.approx(1.02 / 2.02) and max(fr) < 1.0


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, request):
    """An app whose jobs run their tasks in the job thread and write every report; heartbeats every 20 ms."""
    from fastapi.testclient import TestClient

    import api.jobs
    from api.app import create_app

    mp = pytest.MonkeyPatch()
    mp.setattr(api.jobs, "PROGRESS_WRITE_INTERVAL_S", 0.0)
    mp.setattr(api.compute, "HEARTBEAT_S", 0.02)
    url = new_database("sqlite", tmp_path_factory, request)
    app = create_app(test_settings(url, compute_workers=0, job_chunk_paths=32))
    with TestClient(app) as client:
        keys = make_tenants(app)
        h = {"Authorization": f"Bearer {keys[('bureau', 'a')]}"}
        pid = upload(client, h, csv_bytes(50, seed=3))
        yield client, h, pid
    mp.undo()


def test_a_stress_jobs_progress_moves_through_the_accounts_and_is_1_only_at_the_end(in_process):
    c, h, pid = in_process
    r = c.post("/v1/stress-tests", headers=h, json={**BODY, "portfolio_id": pid})
    assert r.status_code == 202, r.text
    jid, seen, t0 = r.json()["id"], [], time.time()
    while time.time() - t0 < 180:
        j = c.get(f"/v1/jobs/{jid}", headers=h).json()
        if j["status"] == "running":
            last = next((ln for ln in reversed(j["log"]) if "accounts" in ln or "workbook" in ln or "saving" in ln), "")
            seen.append((j["progress"], j["eta_s"], last))
        if j["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.01)
    assert j["status"] == "succeeded", j
    assert j["progress"] == 1.0 and j["eta_s"] == 0.0
    progress = [p for p, _, _ in seen]
    assert progress == sorted(progress) and all(p < 1.0 for p in progress), progress[-5:]
    accounts = [p for p, _, last in seen if last.endswith("accounts of baseline") or last.endswith("accounts of severe_fire_weather")]
    assert accounts and all(0 < p < 1 for p in accounts)
    assert len(set(accounts)) >= 2, accounts  # it moves while the accounts run
