"""Load test of the HTTP API: p50 / p99 latency and error rate at 16 concurrent clients.

``python benchmarks/load_api.py [--clients 16] [--requests 160] [--max-seconds 120] [--url URL --key KEY]``

Without ``--url`` it starts ``carbon-risk serve`` on a free loopback port with a fresh SQLite
database in a temporary directory, creates a bank tenant and key, and uploads a 20-parcel portfolio.
The request is the issue's "small collateral valuation": ``POST /v1/collateral-valuations`` with 20
pledged parcels, 1,000 paths, a 10-year crediting horizon, a 3-year annuity loan, attribution off
(price sensitivities on), answered at once (201). The engine work runs in the server's process pool
(one worker per CPU).

Two phases, both at ``--clients`` concurrent clients:

* ``distinct``: every request has its own seed, so every request is computed;
* ``repeat``: the same request again and again, answered from the result cache after the first
  (identical requests give identical numbers; each still gets its own stored result and audit).

Bounded: at most ``--requests`` requests per phase and ``--max-seconds`` of wall time per phase.
Writes a JSON report to ``benchmarks/results/load_api-<time>.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path) -> tuple[subprocess.Popen, str, str]:
    from api.db import Database
    from api.security import create_key, create_tenant

    url = f"sqlite:///{tmp / 'load.sqlite'}"
    db = Database(url)
    db.upgrade()
    with db.session() as s:
        key = create_key(s, create_tenant(s, "load-bank", "bank"))[1]
    db.dispose()
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": url, "CRE_RATE_PER_S": "10000", "CRE_RATE_BURST": "10000"}
    cli = str(Path(sys.executable).parent / "carbon-risk")
    proc = subprocess.Popen([cli, "serve", "--port", str(port), "--log-level", "warning"], env=env, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while time.time() - t0 < 60:
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return proc, base, key
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def _server_cpu(proc) -> tuple[float, float] | None:
    """CPU seconds (user + system) of a server we started and of its worker processes, or None."""
    if proc is None:
        return None
    import psutil

    try:
        main = psutil.Process(proc.pid)
        t = main.cpu_times()
        workers = 0.0
        for c in main.children(recursive=True):
            try:
                ct = c.cpu_times()
                workers += ct.user + ct.system
            except psutil.NoSuchProcess:
                continue
        return t.user + t.system, workers
    except psutil.NoSuchProcess:
        return None


def run_phase(base: str, h: dict, body_for, clients: int, requests: int, max_seconds: float) -> dict:
    """Send ``requests`` POSTs from ``clients`` threads; latencies and errors."""
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    deadline = time.perf_counter() + max_seconds

    def client() -> None:
        with httpx.Client(base_url=base, headers=h, timeout=120) as c:
            while time.perf_counter() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t = time.perf_counter()
                try:
                    resp = c.post("/v1/collateral-valuations", json=body_for(i))
                    err = None if resp.status_code == 201 else f"HTTP {resp.status_code}"
                except httpx.HTTPError as exc:
                    err = type(exc).__name__
                dt = time.perf_counter() - t
                with lock:
                    lat.append(dt)
                    if err:
                        errors.append(err)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    a = np.asarray(lat)
    return {
        "requests": int(a.size), "wall_s": round(wall, 2),
        "throughput_per_s": round(a.size / wall, 2) if wall else None,
        "p50_s": round(float(np.percentile(a, 50)), 3) if a.size else None,
        "p99_s": round(float(np.percentile(a, 99)), 3) if a.size else None,
        "max_s": round(float(a.max()), 3) if a.size else None,
        "error_rate": round(len(errors) / a.size, 4) if a.size else None,
        "errors": sorted(set(errors)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=160, help="requests per phase (bound)")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="wall-time bound per phase")
    ap.add_argument("--parcels", type=int, default=20)
    ap.add_argument("--paths", type=int, default=1000)
    ap.add_argument("--horizon", type=int, default=10, help="crediting horizon, years")
    ap.add_argument("--term", type=int, default=3, help="loan term, years")
    ap.add_argument("--phases", default="distinct,repeat")
    ap.add_argument("--url", help="an already running server (then --key is needed)")
    ap.add_argument("--key")
    args = ap.parse_args(argv)

    from tests.conftest import make_frame

    proc = None
    tmp = tempfile.TemporaryDirectory(prefix="cre-load-")
    phases: dict[str, dict] = {}
    try:
        if args.url:
            base, key = args.url.rstrip("/"), args.key
        else:
            proc, base, key = start_server(Path(tmp.name))
        h = {"Authorization": f"Bearer {key}"}
        csv = make_frame(args.parcels, seed=1).to_csv(index=False).encode()
        r = httpx.post(base + "/v1/portfolios", headers=h, files={"file": ("p.csv", csv, "text/csv")}, timeout=60)
        r.raise_for_status()
        terms = {"amount_cny": 300_000, "term_years": args.term, "interest_rate": 0.045,
                 "crediting_horizon_years": args.horizon}
        base_body = {"portfolio_id": r.json()["id"], "terms": terms, "paths": args.paths, "attribution": False}
        # warm-up, concurrent so that every pool worker loads its compiled kernels and caches the
        # portfolio before the measured phases (a server in service is warm)
        from concurrent.futures import ThreadPoolExecutor

        def warm(i: int) -> None:
            httpx.post(base + "/v1/collateral-valuations", headers=h, json={**base_body, "seed": 10**6 + i},
                       timeout=120).raise_for_status()

        with ThreadPoolExecutor(8) as ex:
            list(ex.map(warm, range(16)))
        # the repeated request has been seen once before the repeat phase (as a bank re-asking would)
        httpx.post(base + "/v1/collateral-valuations", headers=h, json={**base_body, "seed": 1},
                   timeout=120).raise_for_status()
        for name in [p.strip() for p in args.phases.split(",") if p.strip()]:
            if name == "distinct":
                body_for = (lambda i: {**base_body, "seed": 1000 + i})
            elif name == "repeat":
                body_for = (lambda i: {**base_body, "seed": 1})
            else:
                raise SystemExit(f"unknown phase {name!r}")
            before = _server_cpu(proc)
            phases[name] = run_phase(base, h, body_for, args.clients, args.requests, args.max_seconds)
            after = _server_cpu(proc)
            if before and after:  # where the CPU went, per request: the server process and its workers
                n = max(phases[name]["requests"], 1)
                phases[name]["server_cpu_s_per_request"] = round((after[0] - before[0]) / n, 4)
                phases[name]["workers_cpu_s_per_request"] = round((after[1] - before[1]) / n, 4)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        tmp.cleanup()

    report = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "request": f"POST /v1/collateral-valuations ({args.parcels} pledged parcels x {args.paths} paths, "
                   f"{args.horizon}-year crediting horizon, {args.term}-year loan, attribution off, at once)",
        "clients": args.clients, "cpu_count": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "phases": phases,
    }
    out = ROOT / "benchmarks" / "results" / f"load_api-{datetime.now(timezone.utc):%Y-%m-%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if not any(p["errors"] for p in phases.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
