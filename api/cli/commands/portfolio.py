"""``carbon-risk demo-portfolio`` and ``carbon-risk validate``: make and check portfolio files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from api.cli.common import CLIError, echo_json, format_option, load_model, note, parameters_option

WRITABLE_SUFFIXES = (".csv", ".parquet", ".xlsx", ".geojson")
EXCEL_MAX_ROWS = 1_048_575  # one header row + data rows per sheet


# --------------------------------------------------------------------------------------------
# demo-portfolio
# --------------------------------------------------------------------------------------------
def _geojson_points(frame: pd.DataFrame) -> dict[str, Any]:
    """A FeatureCollection of points; the other columns become properties (NaN -> null)."""
    props = frame.drop(columns=["longitude", "latitude"])
    props = props.astype(object).where(props.notna(), None)
    records = props.to_dict("records")
    lon = frame["longitude"].to_numpy(np.float64).tolist()
    lat = frame["latitude"].to_numpy(np.float64).tolist()
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]}, "properties": p}
        for x, y, p in zip(lon, lat, records)]}


def _json_scalar(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        f = float(o)
        return f if math.isfinite(f) else None
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_portfolio_table(frame: pd.DataFrame, output: str | Path) -> Path:
    """Write a portfolio table in the format of the file suffix (.csv, .parquet, .xlsx, .geojson)."""
    from models.demo import write_demo_csv

    path = Path(output)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise CLIError(f"{path}: unsupported output type {suffix or '(none)'!r}; use {', '.join(WRITABLE_SUFFIXES)}")
    if not path.parent.exists():
        raise CLIError(f"{path}: directory {path.parent} does not exist")
    if suffix == ".csv":
        write_demo_csv(frame, path)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".xlsx":
        if len(frame) > EXCEL_MAX_ROWS:
            raise CLIError(f"{path}: {len(frame):,} parcels do not fit an Excel sheet ({EXCEL_MAX_ROWS:,} rows); "
                           "use .csv or .parquet")
        frame.to_excel(path, index=False, sheet_name="parcels", engine="openpyxl")
    else:
        path.write_text(json.dumps(_geojson_points(frame), ensure_ascii=False, default=_json_scalar),
                        encoding="utf-8")
    return path


@click.command("demo-portfolio")
@click.option("--parcels", "n_parcels", type=click.IntRange(1, 10_000_000), default=5000, show_default=True,
              help="Number of parcels.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=2026, show_default=True,
              help="Seed: the same parcels and seed always give the identical file.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True,
              help="Output file; the format follows the suffix: .csv, .parquet, .xlsx or .geojson (points).")
@parameters_option
@format_option
def demo_portfolio(n_parcels, seed, output, parameters, fmt):
    """Write a synthetic Lishui portfolio (nine real counties, synthetic 合成 townships and villages).

    The shipped demo file is `--parcels 5000 --seed 2026`. Locations, species mix, ages, sites and
    elevations follow models/data/demo_lishui.yaml (sources and confidence labels inside).

    \b
    Examples:
      carbon-risk demo-portfolio -o demo.csv
      carbon-risk demo-portfolio --parcels 200000 --seed 7 -o big.parquet
      carbon-risk demo-portfolio --parcels 300 -o parcels.geojson
    """
    from models.demo import generate_demo_portfolio

    params = load_model(parameters)
    frame = generate_demo_portfolio(n_parcels, seed, params)
    path = write_portfolio_table(frame, output)
    summary = {"file": str(path), "parcels": len(frame), "seed": seed, "area_ha": float(frame["area_ha"].sum()),
               "counties": int(frame["county"].nunique())}
    if fmt == "json":
        echo_json(summary)
    else:
        click.echo(f"wrote {path}: {summary['parcels']:,} parcels, {summary['area_ha']:,.1f} ha in "
                   f"{summary['counties']} counties (seed {seed})")


# --------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------
def _parameter_problems(path: str, message: str) -> list[dict[str, Any]]:
    """Split a ParameterError message (``file: header`` then ``  field: reason`` lines) into records."""
    lines = message.splitlines()
    fields = [ln.strip() for ln in lines[1:] if ln.startswith("  ")] if "invalid parameter file (" in lines[0] else []
    if not fields:
        reason = " ".join(ln.strip() for ln in lines if ln.strip())
        return [{"file": path, "row": None, "column": None, "value": None, "reason": reason}]
    out = []
    for ln in fields:
        col, _, reason = ln.partition(": ")
        out.append({"file": path, "row": None, "column": col, "value": None, "reason": reason or col})
    return out


def _fail(file: str, kind: str, problems: list[dict[str, Any]], lines: list[str], fmt: str) -> None:
    """Report every problem (stderr lines, or a JSON list on stdout), then exit 2 with a count line."""
    if fmt == "json":
        echo_json(problems)
    else:
        for ln in lines:
            click.echo(ln, err=True)
    raise CLIError(f"{file}: {len(problems)} problem(s); the {kind} file is not valid")


def _validate_parameters(file: str, fmt: str) -> None:
    from models.parameters import ParameterError, load_parameters

    try:
        p = load_parameters(file)
    except ParameterError as exc:
        msg = str(exc)
        probs = _parameter_problems(file, msg)
        lines = [f"{file}: {d['column']}: {d['reason']}" if d["column"] else d["reason"] for d in probs]
        _fail(file, "parameter", probs, lines, fmt)
        return
    summary = {"file": file, "kind": "parameters", "valid": True, "region": p.region, "version": p.version,
               "species": len(p.species_ids), "perils": sorted(p.perils), "sha256": p.sha256}
    if fmt == "json":
        echo_json(summary)
    else:
        click.echo(f"{file}: OK, parameter set {p.region} {p.version}, {len(p.species_ids)} species, "
                   f"{len(p.perils)} perils, sha256 {p.sha256[:12]}")


def _validate_portfolio(file: str, parameters: str | None, fmt: str) -> None:
    from models.portfolio import PortfolioError, load_portfolio

    params = load_model(parameters)
    try:
        pf = load_portfolio(file, params)
    except PortfolioError as exc:
        _fail(file, "portfolio", [p.as_dict() for p in exc.problems], [str(p) for p in exc.problems], fmt)
        return
    counts = pf.frame["species_group"].value_counts()
    counts = counts.sort_index().sort_values(ascending=False, kind="mergesort")
    area = float(pf.area_ha.sum())
    if fmt == "json":
        echo_json({"file": file, "kind": "portfolio", "valid": True, "parcels": pf.n_parcels, "area_ha": area,
                   "species_counts": {str(k): int(v) for k, v in counts.items()},
                   "parameter_sha256": pf.parameter_sha256})
    else:
        species = ", ".join(f"{k} {v}" for k, v in counts.items())
        click.echo(f"{file}: OK, {pf.n_parcels:,} parcels, {area:,.1f} ha; species: {species}")


@click.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--kind", type=click.Choice(["auto", "portfolio", "parameters", "scenario"]), default="auto",
              show_default=True,
              help="What FILE is (auto: .yaml/.yml is a parameter file, anything else a portfolio; "
                   "scenario: a stress scenario file).")
@parameters_option
@format_option
def validate(file, kind, parameters, fmt):
    """Check a portfolio file (CSV, Parquet, xlsx, GeoJSON) or a parameter file (YAML).

    Clean: exit 0 and a one-line summary (parcels, area, species counts). Not clean: exit 2 and every
    problem, one per line on stderr (file, row, column, value, reason), or with --format json a JSON
    list of problems on stdout.

    \b
    Examples:
      carbon-risk validate my_parcels.csv
      carbon-risk validate my_parcels.xlsx --format json
      carbon-risk validate models/parameters/lishui.yaml
    """
    if kind == "auto":
        kind = "parameters" if Path(file).suffix.lower() in (".yaml", ".yml") else "portfolio"
    if kind == "scenario":
        from api.cli.commands.stress import validate_scenario_file

        validate_scenario_file(file, fmt)
    elif kind == "parameters":
        _validate_parameters(file, fmt)
    else:
        _validate_portfolio(file, parameters, fmt)


COMMANDS = [demo_portfolio, validate]
