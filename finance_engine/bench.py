"""Engine benchmarks: throughput, peak memory, RNG share, loan-valuation latency.

Run ``carbon-risk bench`` (or ``python benchmarks/bench_engine.py`` in a checkout). Each case runs in a fresh
subprocess so its peak resident memory can be read; results go to ``benchmarks/results/*.json``
so runs on different commits can be compared. Nothing here is asserted by the tests.

Cases
-----
``demo_full``      the full model (growth, every peril, accounting, crediting) on the shipped
                   5,000-parcel portfolio; throughput in parcel-path-years per second.
``rng_only``       drawing exactly the random numbers the ``demo_full`` run consumed, in the same
                   (paths x parcels) shapes, with the engine's keyed generator; and the same count
                   with numpy's PCG64 and Philox for reference. The engine/RNG ratio is the
                   practical limit.
``loan``           one loan's valuation run: 50 parcels, 10,000 paths, 30 years, exactly as
                   :func:`finance_engine.collateral.value_collateral` runs the engine (per-path
                   results, no summary tables) on ``--workers`` threads: the first full-size run
                   of the process, then the best and median of five (a warm service), and the
                   best of three on one thread. The 50 parcels are every 100th of the demo
                   portfolio, spread over the whole city (nine counties). Every loan runs the
                   region's pine wilt landscape (2,666 cells): the first run of a process on a
                   seed simulates it for the 10,000 paths (``seconds_first_run``), later runs on
                   that seed read its footprint from the process's cache, as a service does
                   after its workers have warmed it (``CRE_LANDSCAPE_WARM_PATHS``).
``loan_project``   the same run for the demo's largest project of at most 50 parcels (in the
                   shipped demo ``LS-LQ-P03``: 47 parcels in one township of Longquan), the shape
                   of a carbon-pledge loan: one borrower's forest. Both loan cases also time the
                   engine's warm worker processes (``scheduler="warm"``, two processes kept between
                   runs: ``seconds_warm``, best and median of five after the run that starts them,
                   ``seconds_warm_first_run``).
``loan_valuation`` the whole of one loan's valuation, :func:`finance_engine.collateral.value_collateral`
                   end to end (engine, issuance, price paths, the value regressions, credit view,
                   sizing) for ``loan_project``'s loan: a 5-year loan on a 30-year crediting horizon,
                   10,000 paths, attribution off, on ``--workers`` threads; ``seconds`` without the
                   price sensitivities, ``seconds_with_sensitivities`` with them (the default of the
                   call), both warm (best and median of five), and the first run of the process;
                   ``seconds_new_pledge``: with its sensitivities, the first valuation of each of five
                   other projects of 20-50 parcels (best and median: a service values a new pledge
                   each time, building its set-up); ``seconds_warm``: with its sensitivities on the
                   engine's warm worker processes.
``city``           the target's city-scale run: a generated 200,000-parcel portfolio,
                   ``--city-paths`` paths (default 1,000), 30 years, on ``--workers`` threads
                   (``--city-scheduler threads``, the default) or worker processes
                   (``--city-scheduler processes``, the engine's default local backend), in the
                   engine's own chunk size (``auto_chunk_paths``: 32 paths), recorded as
                   ``chunk_paths``.
``price_layer``    layer pricing of a shuffled 1,000,000-row event loss table.
``city_memory``    peak memory of the city run with ``--memory-paths`` paths (default 256): memory
                   depends on chunk size and parcels, hardly on paths. With threads the one process
                   holds everything, so its peak is the run's; with processes ``peak_rss_mb`` is the
                   largest single process (the parent or one worker), not their sum. Both city cases
                   also report ``peak_pss_total_mb``: the largest summed proportional set size of the
                   case's process and its workers (shared pages counted once), the run's physical
                   memory whatever the scheduler.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

def default_results_dir() -> Path:
    """``benchmarks/results`` of the checkout when run from it, else ``./bench-results``."""
    here = Path.cwd() / "benchmarks" / "results"
    return here if here.parent.is_dir() else Path.cwd() / "bench-results"


def _case(name: str, args: dict) -> dict:
    """Run one case in a subprocess; return its JSON plus peak RSS in MB."""
    code = f"import json,sys; from finance_engine.bench import _run_case; print(json.dumps(_run_case({name!r}, {args!r})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark case {name} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _peak_rss_mb() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ch = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(ru, ch) / 1024.0


def _status_kb(pid: int, field: str) -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmHWM``: the process's peak resident set)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _pss_kb(pid: int) -> int:
    """Proportional set size of one process (kB): a page shared by n processes counts 1/n in each.

    Capped at the process's peak resident set (``VmHWM``), an upper bound at every moment since PSS
    never exceeds RSS. The kernel builds ``smaps_rollup`` by walking the address space while the
    process goes on mapping and unmapping memory, so a reading is not atomic: one threaded
    10,000-path city run read 2,786 MiB against a peak RSS of 1,729 MiB (a region counted twice,
    presumably; the cause was not pinned down).
    """
    pss = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except OSError:
        pass
    if pss is None:
        return 0
    hwm = _status_kb(pid, "VmHWM")
    return min(pss, hwm) if hwm is not None else pss


def _process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (Linux ``/proc``)."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    # the command name may hold spaces and parentheses: the fields follow the last ')'
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parent.items() if pp in frontier]
        tree.extend(frontier)
    return tree


class PeakPss:
    """Largest summed PSS of this process and its descendants while the block runs, in MiB.

    Unlike the largest single process's ``ru_maxrss``, the sum covers worker processes, and counts
    pages they share with the parent after ``fork`` once: it is the run's physical memory. Sampled
    every ``interval`` seconds by a background thread, so a peak shorter than that can be missed.
    ``mb`` is None where ``/proc/<pid>/smaps_rollup`` is not available (not Linux).
    """

    def __init__(self, interval: float = 0.25):
        import threading

        self.interval = interval
        self._peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = os.path.exists(f"/proc/{os.getpid()}/smaps_rollup")

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            self._peak_kb = max(self._peak_kb, sum(_pss_kb(p) for p in _process_tree(me)))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakPss":
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()

    @property
    def mb(self) -> float | None:
        return self._peak_kb / 1024.0 if self.available else None


def calling_frame(frame):
    """``frame``, or the function frame around it when it is a comprehension's (``<listcomp>`` and
    the like are frames of their own before Python 3.12): who really asked for the numbers."""
    while frame.f_back is not None and frame.f_code.co_name.startswith("<") and frame.f_code.co_name != "<module>":
        frame = frame.f_back
    return frame


def _warm_timings(run) -> dict[str, float]:
    """``run`` on the engine's warm worker processes (``scheduler="warm"``): its first call (which starts
    the workers and fills their caches) apart, then the best and median of five; the pool is stopped
    afterwards (its workers' memory is not this process's ``peak_rss_mb``)."""
    from finance_engine.simulation.warm_pool import shutdown_warm_pool

    try:
        t = time.perf_counter()
        run()
        out = {"seconds_warm_first_run": time.perf_counter() - t}
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            run()
            runs.append(time.perf_counter() - t)
        out.update(seconds_warm=min(runs), seconds_warm_median=float(sorted(runs)[len(runs) // 2]))
        return out
    finally:
        shutdown_warm_pool()


def largest_project(portfolio, max_parcels: int) -> str:
    """Id of the portfolio's project with the most parcels, at most ``max_parcels`` (ties: the first id)."""
    counts = portfolio.frame["project_id"].value_counts()
    counts = counts[counts <= max_parcels]
    if counts.empty:
        raise ValueError(f"no project of at most {max_parcels} parcels")
    return str(counts[counts == counts.max()].sort_index().index[0])


def _run_case(name: str, args: dict) -> dict:
    import numpy as np

    import models.rng as rng_mod
    from finance_engine.simulation import balanced_chunk_paths, simulate, useful_threads
    from models.demo import demo_portfolio_path, generate_demo_portfolio
    from models.parameters import load_parameters
    from models.portfolio import load_portfolio, validate_frame

    params = load_parameters()
    if name in ("demo_full", "rng_only"):
        pf = load_portfolio(demo_portfolio_path(), params)
        paths, years = args.get("paths", 256), args.get("years", 30)
        # count every random number the run consumes, by wrapping the three generator entry points
        calls: list[tuple[str, tuple[int, ...]]] = []
        originals = (rng_mod._grid, rng_mod._pairs, rng_mod._to_unit)

        def grid(rows, keys):
            calls.append(("grid", (rows.size, keys.size)))
            return originals[0](rows, keys)

        def pairs(a, b):
            calls.append(("pairs", (np.size(a),)))
            return originals[1](a, b)

        def to_unit(z):
            calls.append(("unit", (z.size,)))
            return originals[2](z)

        # Compiled kernels hash their uniforms inline from per-path row hashes (KeyedRandom._rows):
        # such a call by anything but KeyedRandom's own array methods stands for one uniform per row
        # and key -- parcels, or grid cells for the pine wilt spread (an upper bound: infected cells
        # draw nothing). The typhoon hashes a row per (path, storm) pair (pair_rows: one uniform per
        # parcel each, as a row above) and a track and an intensity per pair (pair_uniforms). The pine
        # wilt parcel infections hash only their candidate pairs, and the typhoon's damage draws one
        # per hit, unknown numbers: they are left out, so the count errs low (and the ratio high).
        from models.dynamics import ForestSimulator

        sim = ForestSimulator(params, pf)
        n_cells = next((p.grid.n_cells for p in sim.perils if p.name == "pine_wilt"), 0)
        internal = {"path_uniform", "keyed_uniform", "sparse_uniform", "sparse_keyed_uniform", "parcel_uniform"}
        rows_original = rng_mod.KeyedRandom._rows

        def rows(self, stream, year):
            out = rows_original(self, stream, year)
            caller = calling_frame(sys._getframe(1))
            if caller.f_code.co_name not in internal and stream != "pine_wilt.parcel":
                n_keys = n_cells if stream.endswith(".spread") else self.n_parcels
                subset = caller.f_locals.get("rows") if caller.f_code.co_name == "stand_rows_hash" else None
                calls.append(("grid", (out.size if subset is None else len(subset), n_keys)))
            return out

        import models.perils.typhoon as typhoon_mod

        typhoon_originals = (typhoon_mod.pair_rows, typhoon_mod.pair_uniforms)

        def storm_rows(path_ids, path, storm, bases):
            calls.append(("grid", (np.size(path), pf.n_parcels)))
            return typhoon_originals[0](path_ids, path, storm, bases)

        def storm_uniforms(path_ids, path, base, keys, storm):
            calls.append(("pairs", (np.size(path),)))
            return typhoon_originals[1](path_ids, path, base, keys, storm)

        rng_mod._grid, rng_mod._pairs, rng_mod._to_unit = grid, pairs, to_unit
        rng_mod.KeyedRandom._rows = rows
        typhoon_mod.pair_rows, typhoon_mod.pair_uniforms = storm_rows, storm_uniforms
        simulate(pf, params, years=2, paths=32, seed=1)  # warm-up (imports, compiled kernels)
        calls.clear()
        t = time.perf_counter()
        simulate(pf, params, years=years, paths=paths, seed=1, workers=args.get("workers", 1))
        dt = time.perf_counter() - t
        rng_mod._grid, rng_mod._pairs, rng_mod._to_unit = originals
        rng_mod.KeyedRandom._rows = rows_original
        typhoon_mod.pair_rows, typhoon_mod.pair_uniforms = typhoon_originals
        n_draws = int(sum(np.prod(s) for _, s in calls))
        ppy = pf.n_parcels * paths * years
        out = {"parcels": pf.n_parcels, "paths": paths, "years": years, "seconds": dt,
               "parcel_path_years_per_s": ppy / dt, "random_numbers": n_draws,
               "random_numbers_per_parcel_path_year": n_draws / ppy}
        if name == "rng_only":
            # the same draws in the same shapes with the engine's generator, nothing else
            rs = np.random.default_rng(1)
            def u64(size):
                return rs.integers(0, 2**63, size, dtype=np.int64).astype(np.uint64)

            inputs = [(kind, u64(s[0]), u64(s[1]) if kind == "grid" else None) for kind, s in calls]
            t = time.perf_counter()
            for kind, a, b in inputs:
                if kind == "grid":
                    rng_mod._grid(a, b)
                elif kind == "pairs":
                    rng_mod._pairs(a, a)
                else:
                    rng_mod._to_unit(a)
            keyed = time.perf_counter() - t
            # and the same count with numpy's generators: PCG64 (its default) and Philox (the
            # counter-based generator issue 4 names as an alternative to ours)
            timed = {}
            for label, bits in (("pcg64", np.random.PCG64(1)), ("philox", np.random.Philox(1))):
                g = np.random.Generator(bits)
                t = time.perf_counter()
                for _, s in calls:
                    g.random(s)
                timed[label] = time.perf_counter() - t
            out.update({"rng_keyed_seconds": keyed, "rng_pcg64_seconds": timed["pcg64"],
                        "rng_philox_seconds": timed["philox"], "engine_to_rng_ratio": dt / keyed,
                        "engine_to_pcg64_ratio": dt / timed["pcg64"], "engine_to_philox_ratio": dt / timed["philox"]})
        out["peak_rss_mb"] = _peak_rss_mb()
        return out
    if name in ("loan", "loan_project"):
        pf = load_portfolio(demo_portfolio_path(), params)
        project = largest_project(pf, 50) if name == "loan_project" else None
        if project is None:
            ids = pf.parcel_id[:: max(1, pf.n_parcels // 50)][:50]
        else:
            ids = pf.parcel_id[pf.frame["project_id"].to_numpy() == project]
        sub = pf.subset(ids, params)
        workers = args.get("workers", 2)
        kw = dict(levels=("portfolio",), scenario="collateral", summarise=False,
                  chunk_paths=balanced_chunk_paths(10_000, sub.n_parcels, workers))
        threads = dict(workers=workers, scheduler="threads")
        simulate(sub, params, years=2, paths=64, seed=1, **threads, **kw)  # imports, compiled kernels
        # the first full-size run, reported apart: a fresh process also pays its first large allocations
        t = time.perf_counter()
        simulate(sub, params, years=30, paths=10_000, seed=1, **threads, **kw)
        timings = {"seconds_first_run": time.perf_counter() - t}
        # then the latency of a warm process (a service valuing loan after loan): best and median of
        # five on the threads, best of three on one thread
        for label, extra, n_runs in (("seconds", threads, 5), ("seconds_one_thread", {}, 3)):
            runs = []
            for _ in range(n_runs):
                t = time.perf_counter()
                simulate(sub, params, years=30, paths=10_000, seed=1, **extra, **kw)
                runs.append(time.perf_counter() - t)
            timings[label] = min(runs)
            if label == "seconds":
                timings["seconds_median"] = float(np.median(runs))
        timings.update(_warm_timings(lambda: simulate(sub, params, years=30, paths=10_000, seed=1, workers=workers,
                                                      scheduler="warm", **kw)))
        n = sub.n_parcels
        return {"project": project, "parcels": n, "paths": 10_000, "years": 30, "threads": workers, **timings,
                "parcel_path_years_per_s": n * 10_000 * 30 / timings["seconds"], "peak_rss_mb": _peak_rss_mb()}
    if name == "loan_valuation":
        from finance_engine.collateral import value_collateral

        pf = load_portfolio(demo_portfolio_path(), params)
        project = largest_project(pf, 50)
        terms = {"amount_cny": 1_000_000, "term_years": 5, "interest_rate": 0.045, "crediting_horizon_years": 30}
        paths = args.get("paths", 10_000)
        kw = dict(project_id=project, paths=paths, seed=1, attribution=False, workers=args.get("workers", 2))
        value_collateral(pf, params, terms, **{**kw, "paths": 64}, sensitivities=True)  # imports, kernels
        t = time.perf_counter()
        value_collateral(pf, params, terms, **kw, sensitivities=True)
        timings = {"seconds_first_run": time.perf_counter() - t}
        for label, sens in (("seconds", False), ("seconds_with_sensitivities", True)):
            runs = []
            for _ in range(5):
                t = time.perf_counter()
                value_collateral(pf, params, terms, **kw, sensitivities=sens)
                runs.append(time.perf_counter() - t)
            timings[label] = min(runs)
            timings[f"{label}_median"] = float(np.median(runs))
        timings["seconds_median"] = timings.pop("seconds_median")
        # a service values a new pledge each time: the first valuation of five other projects of 20-50 parcels
        # (their set-ups built, the region's landscape and the seed's epidemic shared), with the sensitivities
        counts = pf.frame["project_id"].value_counts().sort_index()
        others = [str(p) for p, n in counts.items() if p and p != project and 20 <= n <= 50][:5]
        new_runs = []
        for other in others:
            t = time.perf_counter()
            value_collateral(pf, params, terms, **{**kw, "project_id": other}, sensitivities=True)
            new_runs.append(time.perf_counter() - t)
        if new_runs:
            timings["seconds_new_pledge"] = min(new_runs)
            timings["seconds_new_pledge_median"] = float(np.median(new_runs))
        timings.update(_warm_timings(lambda: value_collateral(pf, params, terms, **kw, sensitivities=True,
                                                              scheduler="warm")))
        pledged = pf.frame["project_id"].to_numpy() == project
        threads = useful_threads(paths, int(pledged.sum()), args.get("workers", 2))  # what value_collateral ran on
        return {"project": project, "paths": paths, "years": 30, "threads": threads, **timings,
                "peak_rss_mb": _peak_rss_mb()}
    if name in ("city", "city_memory"):
        n = args.get("parcels", 200_000)
        frame = generate_demo_portfolio(n, 7, params)
        pf = validate_frame(frame, params)
        paths, years = args.get("paths", 1000), args.get("years", 30)
        t = time.perf_counter()
        scheduler = args.get("scheduler", "threads")
        del frame  # the validated portfolio keeps what the engine reads
        with PeakPss() as pss:
            # the engine's own chunk size (auto_chunk_paths: 32 paths for 200,000 parcels), as a user gets it
            res = simulate(pf, params, years=years, paths=paths, seed=1, workers=args.get("workers", 2),
                           scheduler=None if scheduler == "processes" else scheduler,
                           chunk_paths=args.get("chunk_paths"), levels=("portfolio", "county"))
        dt = time.perf_counter() - t
        ppy = n * paths * years
        return {"parcels": n, "paths": paths, "years": years, "scheduler": scheduler, "workers": args.get("workers", 2),
                "chunk_paths": res.run_info["chunk_paths"], "seconds": dt, "parcel_path_years_per_s": ppy / dt,
                "seconds_for_1000_paths": dt * 1000 / paths, "peak_rss_mb": _peak_rss_mb(),
                "peak_pss_total_mb": pss.mb}
    if name == "price_layer":
        import pandas as pd

        from finance_engine.insurance import price_layer

        rng = np.random.default_rng(3)
        n_rows, n_years = 1_000_000, 200_000
        elt = pd.DataFrame({"year": rng.integers(0, n_years, n_rows), "event_id": np.arange(n_rows),
                            "loss": rng.exponential(10.0, n_rows)})
        price_layer(elt.head(1000), n_years, 20.0, 30.0)
        t = time.perf_counter()
        price_layer(elt, n_years, 20.0, 30.0)
        return {"rows": n_rows, "seconds": time.perf_counter() - t, "peak_rss_mb": _peak_rss_mb()}
    raise ValueError(f"unknown case {name}")


def run(cases: list[str], demo_paths: int = 256, city_paths: int = 1000, memory_paths: int = 256,
        workers: int = 2, out: Path | None = None, echo=print, city_scheduler: str = "threads") -> dict:
    results: dict[str, dict] = {}
    for c in cases:
        if c == "demo_full":
            args = {"paths": demo_paths, "workers": 1}
        elif c == "demo_full_workers":
            args = {"paths": demo_paths, "workers": workers}
        elif c == "rng_only":
            args = {"paths": demo_paths}
        elif c == "city":
            args = {"paths": city_paths, "workers": workers, "scheduler": city_scheduler}
        elif c == "city_memory":
            args = {"paths": memory_paths, "workers": workers, "scheduler": city_scheduler}
        elif c in ("loan", "loan_project", "loan_valuation"):
            args = {"workers": workers}
        else:
            args = {}
        echo(f"running {c} {args} ...")
        real = "demo_full" if c == "demo_full_workers" else c
        results[c] = _case(real, args)
        echo(f"  {json.dumps(results[c])}")
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    doc = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
           "results": results}
    results_dir = default_results_dir()
    results_dir.mkdir(parents=True, exist_ok=True)
    path = out or results_dir / f"bench-{doc['when'].replace(':', '')}-{commit}.json"
    path.write_text(json.dumps(doc, indent=2))
    echo(f"wrote {path}")
    return doc


CITY_SCHEDULERS = ("threads", "processes")
ALL_CASES = ["demo_full", "demo_full_workers", "rng_only", "loan", "loan_project", "loan_valuation", "city",
             "city_memory", "price_layer"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=ALL_CASES, choices=ALL_CASES)
    ap.add_argument("--demo-paths", type=int, default=256)
    ap.add_argument("--city-paths", type=int, default=1000)
    ap.add_argument("--memory-paths", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--city-scheduler", choices=CITY_SCHEDULERS, default="threads")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    run(a.cases, a.demo_paths, a.city_paths, a.memory_paths, a.workers, a.out, city_scheduler=a.city_scheduler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
