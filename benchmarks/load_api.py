"""Load test of the HTTP API: p50 / p99 latency and error rate at 16 concurrent clients.

``python benchmarks/load_api.py [--clients 16] [--requests 160] [--max-seconds 120] [--url URL --key KEY]``

Without ``--url`` it starts ``carbon-risk serve`` on a free loopback port with a fresh SQLite
database in a temporary directory, creates a tenant and key, and uploads a 50-parcel portfolio.
The request is a small synchronous simulation: 50 parcels x 1,000 paths x 10 years
(POST /v1/simulations answered at once with 201). There is no collateral valuation endpoint yet;
when there is, this request will be switched to a small collateral valuation (the issue's target:
p99 under 1 s with no errors). A simulation of this size is CPU-bound (about 0.6 s of one core),
so on a 2-core machine 16 concurrent clients queue behind each other and p99 grows with the
queue; the report says how many cores were used.

Bounded: at most ``--requests`` requests and ``--max-seconds`` of wall time. Writes a JSON report
to ``benchmarks/results/load_api-<time>.json`` and prints a summary.
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=160, help="total requests (bound)")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="wall-time bound")
    ap.add_argument("--parcels", type=int, default=50)
    ap.add_argument("--paths", type=int, default=1000)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--url", help="an already running server (then --key is needed)")
    ap.add_argument("--key")
    args = ap.parse_args(argv)

    from tests.conftest import make_frame

    proc = None
    tmp = tempfile.TemporaryDirectory(prefix="cre-load-")
    try:
        if args.url:
            base, key = args.url.rstrip("/"), args.key
        else:
            proc, base, key = start_server(Path(tmp.name))
        h = {"Authorization": f"Bearer {key}"}
        csv = make_frame(args.parcels, seed=1).to_csv(index=False).encode()
        r = httpx.post(base + "/v1/portfolios", headers=h, files={"file": ("p.csv", csv, "text/csv")}, timeout=60)
        r.raise_for_status()
        body = {"portfolio_id": r.json()["id"], "years": args.years, "paths": args.paths, "seed": 1,
                "levels": ["portfolio"]}
        httpx.post(base + "/v1/simulations", headers=h, json=body, timeout=120).raise_for_status()  # warm-up

        lat: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        counter = iter(range(args.requests))
        deadline = time.perf_counter() + args.max_seconds

        def client() -> None:
            with httpx.Client(base_url=base, headers=h, timeout=120) as c:
                while time.perf_counter() < deadline:
                    with lock:
                        if next(counter, None) is None:
                            return
                    t = time.perf_counter()
                    try:
                        resp = c.post("/v1/simulations", json=body)
                        ok = resp.status_code == 201
                        err = None if ok else f"HTTP {resp.status_code}"
                    except httpx.HTTPError as exc:
                        err = type(exc).__name__
                    dt = time.perf_counter() - t
                    with lock:
                        lat.append(dt)
                        if err:
                            errors.append(err)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        tmp.cleanup()

    a = np.asarray(lat)
    report = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "request": f"POST /v1/simulations ({args.parcels} parcels x {args.paths} paths x {args.years} years, "
                   "synchronous)",
        "clients": args.clients, "requests": int(a.size), "wall_s": round(wall, 2),
        "throughput_per_s": round(a.size / wall, 2) if wall else None,
        "p50_s": round(float(np.percentile(a, 50)), 3) if a.size else None,
        "p99_s": round(float(np.percentile(a, 99)), 3) if a.size else None,
        "max_s": round(float(a.max()), 3) if a.size else None,
        "error_rate": round(len(errors) / a.size, 4) if a.size else None,
        "errors": sorted(set(errors)), "cpu_count": os.cpu_count(),
    }
    out = ROOT / "benchmarks" / "results" / f"load_api-{datetime.now(timezone.utc):%Y-%m-%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
