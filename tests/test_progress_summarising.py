"""While a run summarises its results its progress says so, and a job's log keeps one line per message (a job log
showed the last chunk's line twice: once as the chunks ran, again while summarising)."""

from __future__ import annotations

from types import SimpleNamespace

from api.compute import chunks_line
from api.jobs import _append
from finance_engine.simulation import simulate


def test_the_summary_is_reported_as_its_own_phase(small_portfolio, params):
    seen = []
    simulate(small_portfolio, params, years=3, paths=96, seed=1, levels=("portfolio", "county"), chunk_paths=32,
             progress=seen.append)
    n = seen[-1].chunks_total
    assert n == 3 and seen[-1].chunks_done == n and not seen[-1].summarising
    summary = [p for p in seen if p.summarising]
    assert summary and all(p.chunks_done == n - 1 for p in summary)
    assert not any(p.summarising for p in seen if p.chunks_done < n - 1)
    lines = [chunks_line(p) for p in seen]
    assert "progress 2/3 chunks: summarising the results" in lines and lines[-1] == "progress 3/3 chunks"


def test_a_job_log_keeps_one_line_per_repeated_message():
    job = SimpleNamespace(log=[])
    for msg in ("progress 1/3 chunks", "progress 2/3 chunks", "progress 2/3 chunks: summarising the results",
                "progress 2/3 chunks: summarising the results", "progress 3/3 chunks", "progress 3/3 chunks"):
        _append(job, msg)
    assert [ln.split(" ", 1)[1] for ln in job.log] == [
        "progress 1/3 chunks", "progress 2/3 chunks", "progress 2/3 chunks: summarising the results",
        "progress 3/3 chunks"]
