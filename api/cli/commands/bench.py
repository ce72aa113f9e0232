"""``carbon-risk bench``: the engine benchmarks (throughput, memory, RNG share, loan latency)."""

from __future__ import annotations

from pathlib import Path

import click

from api.cli.common import OutputFile, echo_json, force_option, note
from finance_engine.bench import ALL_CASES, CITY_SCHEDULERS


@click.command("bench")
@click.option("--cases", multiple=True, type=click.Choice(ALL_CASES), help="Cases to run (repeat; default: all).")
@click.option("--demo-paths", type=click.IntRange(32, 100_000), default=256, show_default=True)
@click.option("--city-paths", type=click.IntRange(32, 100_000), default=1000, show_default=True)
@click.option("--memory-paths", type=click.IntRange(32, 1_000_000), default=256, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--city-scheduler", type=click.Choice(CITY_SCHEDULERS), default="threads", show_default=True,
              help="How the city cases run their --workers: threads in one process, or worker processes.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Result JSON (default: benchmarks/results/).")
@force_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def bench(cases, demo_paths, city_paths, memory_paths, workers, city_scheduler, out, force, fmt):
    """Measure the engine: parcel-path-years per second, peak memory, engine/RNG time, loan latency.

    Each case runs in its own process; results are written to a JSON file so runs can be compared.

    \b
    Examples:
      carbon-risk bench --cases demo_full --cases rng_only
      carbon-risk bench --cases city --city-paths 128
      carbon-risk bench --cases city_memory --memory-paths 10000 --city-scheduler processes
    """
    from finance_engine.bench import run

    if out:  # checked before the benchmarks run (minutes), not when their result is written
        OutputFile(out, suffixes=(".json",), force=force, sidecar=False, option="--out")
    doc = run(list(cases) or ALL_CASES, demo_paths, city_paths, memory_paths, workers,
              Path(out) if out else None, echo=note, city_scheduler=city_scheduler)
    if fmt == "json":
        echo_json(doc)
        return
    for name, r in doc["results"].items():
        click.echo(table_row(name, r))


def table_row(name: str, r: dict) -> str:
    """One case's line of the bench table."""
    rate = r.get("parcel_path_years_per_s")
    return (f"{name:18s} {r['seconds']:8.2f} s  "
            + (f"{rate / 1e6:8.2f} M parcel-path-years/s  " if rate else " " * 33)
            + f"peak {r['peak_rss_mb']:7.0f} MB"
            + (f"  engine/RNG {r['engine_to_rng_ratio']:.1f}x" if "engine_to_rng_ratio" in r else "")
            + (f" (PCG64 {r['engine_to_pcg64_ratio']:.1f}x, Philox {r['engine_to_philox_ratio']:.1f}x)"
               if "engine_to_philox_ratio" in r else "")
            + (f"  (median {r['seconds_median']:.2f} s, first run {r['seconds_first_run']:.2f} s, "
               f"one thread {r['seconds_one_thread']:.2f} s)" if "seconds_one_thread" in r else "")
            + (f"  (median {r['seconds_median']:.2f} s; with price sensitivities {r['seconds_with_sensitivities']:.2f} s,"
               f" median {r['seconds_with_sensitivities_median']:.2f} s; first run {r['seconds_first_run']:.2f} s)"
               if "seconds_with_sensitivities" in r else "")
            + (f"  (a new pledge {r['seconds_new_pledge']:.2f} s, median {r['seconds_new_pledge_median']:.2f} s)"
               if "seconds_new_pledge" in r else "")
            + (f"  [warm processes {r['seconds_warm']:.2f} s, median {r['seconds_warm_median']:.2f} s]"
               if "seconds_warm" in r else ""))


COMMANDS = [bench]
