"""Shared CLI plumbing: error handling, output formats, the default portfolio and parameter set."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class CLIError(click.ClickException):
    """Bad input: printed as one line, exit code 2."""

    exit_code = EXIT_BAD_INPUT


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.bool_):
        return bool(o)
    if is_dataclass(o):
        return asdict(o)
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def json_text(obj: Any) -> str:
    """Valid JSON of a result (NaN and infinities, such as an unbounded interval end, become null)."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    return json.dumps(_clean(json.loads(json.dumps(obj, default=_json_default, allow_nan=True))),
                      ensure_ascii=False, indent=2, allow_nan=False)


def echo_json(obj: Any) -> None:
    """Print JSON (NaN and infinities become null) on stdout."""
    click.echo(json_text(obj))


def note(msg: str) -> None:
    """A progress or information line on stderr."""
    click.echo(msg, err=True)


def model_notes_text(notes: dict | None) -> list[str]:
    """Readable lines for what the engine's perils recorded about a run's set-up (provenance
    ``model_notes``): an empty list when there is nothing to say."""
    out = []
    outside = (notes or {}).get("pine_wilt_hosts_outside_landscape", 0)
    if outside:
        out.append(f"note: {outside} pine parcel(s) lie outside the region's pine wilt landscape; their cells are "
                   "simulated around them, driven by the region's epidemic but not part of it (build a landscape "
                   "that covers them: carbon-risk landscape)")
    return out


def show_model_notes(provenance: dict) -> None:
    """Print :func:`model_notes_text` of a result's provenance on stderr, with its parameter variant."""
    for line in model_notes_text(provenance.get("model_notes")):
        note(line)
    if provenance.get("parameter_variant"):
        note(f"note: parameters derived from the file in memory: {provenance['parameter_variant']}")


def load_model(parameters: str | None):
    from models.parameters import DEFAULT_REGION, ParameterError, load_parameters

    try:
        return load_parameters(parameters or DEFAULT_REGION)
    except ParameterError as exc:
        raise CLIError(str(exc).replace("\n", "; ")) from exc


def load_portfolio_or_demo(path: str | None, params):
    """The given portfolio file, or the shipped 5,000-parcel Lishui demo portfolio."""
    from models.portfolio import PortfolioError, load_portfolio

    if path is None:
        from models.demo import demo_portfolio_path

        path = str(demo_portfolio_path())
    try:
        return load_portfolio(path, params)
    except PortfolioError as exc:
        first = exc.problems[0]
        more = f" (and {len(exc.problems) - 1} more problem(s); run `carbon-risk validate {path}` for all)" \
            if len(exc.problems) > 1 else ""
        raise CLIError(f"{first}{more}") from exc


def portfolio_option(f: Callable) -> Callable:
    return click.option("--portfolio", "-p", "portfolio", type=click.Path(dir_okay=False), default=None,
                        help="Portfolio file (CSV, Parquet, xlsx, GeoJSON). Default: the shipped Lishui demo.")(f)


def parameters_option(f: Callable) -> Callable:
    return click.option("--parameters", "parameters", default=None, metavar="REGION|FILE",
                        help="Parameter set: a shipped region id or a YAML file. Default: lishui.")(f)


def format_option(f: Callable) -> Callable:
    return click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="Output format on stdout.")(f)


def run_guarded(group: click.Group, argv: list[str]) -> int:
    """Run the CLI: bad input -> one line + exit 2; unexpected failure -> one line + exit 1."""
    try:
        rv = group.main(args=argv, prog_name="carbon-risk", standalone_mode=False)
        # with standalone_mode=False click returns ctx.exit(n)'s code instead of raising
        if isinstance(rv, int) and not isinstance(rv, bool):
            return rv
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_FAILURE
    except click.UsageError as exc:
        click.echo(f"carbon-risk: {exc.format_message()}", err=True)
        return EXIT_BAD_INPUT
    except click.ClickException as exc:
        click.echo(f"carbon-risk: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, never a traceback
        click.echo(f"carbon-risk: failed: {type(exc).__name__}: {exc}", err=True)
        return EXIT_FAILURE
    return EXIT_OK


class ProgressBar:
    """A one-line progress bar with ETA on stderr; silent when stderr is not a terminal."""

    def __init__(self, label: str, enabled: bool | None = None):
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._last = ""

    def __call__(self, p) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * p.fraction)
        eta = "" if p.eta_s is None else f" ETA {p.eta_s:5.1f}s"
        line = f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {p.chunks_done}/{p.chunks_total}{eta}"
        if line != self._last:
            sys.stderr.write(line)
            sys.stderr.flush()
            self._last = line
        if p.chunks_done == p.chunks_total:
            sys.stderr.write("\n")
            sys.stderr.flush()


def simulation_options(f: Callable) -> Callable:
    """--years --paths --seed --workers --chunk-paths --scheduler --carbon-method."""
    opts = [
        click.option("--years", type=click.IntRange(1, 200), default=30, show_default=True, help="Horizon in years."),
        click.option("--paths", type=click.IntRange(1, 10_000_000), default=1000, show_default=True,
                     help="Monte Carlo paths."),
        click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=2026, show_default=True),
        click.option("--carbon-method", type=click.Choice(["bef", "fang"]), default="bef", show_default=True),
        click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
                     help="Local worker processes."),
        click.option("--chunk-paths", type=click.IntRange(1, 1_000_000), default=None,
                     help="Paths per chunk (memory/speed only; results are identical). Default: sized from the "
                          "paths, parcels and workers, at most 4 million path-parcels a chunk (about 250 MB)."),
        click.option("--scheduler", default=None, metavar="threads|local-cluster|tcp://HOST:PORT",
                     help="threads: --workers threads in this process (one copy of the portfolio and set-up: "
                          "the least memory for a large portfolio); local-cluster or tcp://HOST:PORT: a Dask cluster. "
                          "Default: --workers local processes."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f
