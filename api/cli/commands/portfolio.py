"""``carbon-risk demo-portfolio`` and ``carbon-risk validate``: make and check portfolio files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from api.cli.common import (
    CLIError,
    OutputFile,
    echo_json,
    force_option,
    format_option,
    load_model,
    note,
    parameter_inputs,
    parameters_option,
    provenance_frame,
    show_portfolio_warnings,
)

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


def write_portfolio_table(frame: pd.DataFrame, output: str | Path | OutputFile, *, force: bool = False,
                          provenance: dict | None = None) -> Path:
    """Write a portfolio table in the format of the file suffix (.csv, .parquet, .xlsx, .geojson),
    through a temporary file (an existing file is replaced only with ``force``). An .xlsx gets the
    ``provenance`` as a second sheet (the parcels stay on the first, the sheet portfolios are read
    from); the other formats get it in a sibling ``.provenance.json``."""
    from models.demo import write_demo_csv

    out = output if isinstance(output, OutputFile) else _portfolio_output(output, force, ())
    suffix = out.suffix
    if suffix == ".xlsx" and len(frame) > EXCEL_MAX_ROWS:
        raise CLIError(f"{out.path}: {len(frame):,} parcels do not fit an Excel sheet ({EXCEL_MAX_ROWS:,} rows); "
                       "use .csv or .parquet")

    def write(p: Path) -> None:
        if suffix == ".csv":
            write_demo_csv(frame, p)
        elif suffix == ".parquet":
            frame.to_parquet(p, index=False)
        elif suffix == ".xlsx":
            with pd.ExcelWriter(p, engine="openpyxl") as xw:
                frame.to_excel(xw, index=False, sheet_name="parcels")
                if provenance is not None:
                    provenance_frame(provenance).to_excel(xw, index=False, sheet_name="provenance")
        else:
            p.write_text(json.dumps(_geojson_points(frame), ensure_ascii=False, default=_json_scalar),
                         encoding="utf-8")

    out.write(write, provenance=provenance if out.sidecar is not None else None)
    return out.path


def _portfolio_output(output, force: bool, inputs) -> OutputFile:
    suffix = Path(output).suffix.lower()
    return OutputFile(output, suffixes=WRITABLE_SUFFIXES, force=force, inputs=inputs,
                      sidecar=suffix in WRITABLE_SUFFIXES and suffix != ".xlsx")


@click.command("demo-portfolio")
@click.option("--parcels", "n_parcels", type=click.IntRange(1, 10_000_000), default=5000, show_default=True,
              help="Number of parcels.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=2026, show_default=True,
              help="Seed: the same parcels and seed always give the identical file.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True,
              help="Output file; the format follows the suffix: .csv, .parquet, .xlsx or .geojson (points). "
                   "Provenance (seed, parameter file) goes to a provenance sheet (.xlsx) or a sibling "
                   ".provenance.json.")
@parameters_option
@force_option
@format_option
def demo_portfolio(n_parcels, seed, output, parameters, force, fmt):
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
    out = _portfolio_output(output, force, parameter_inputs(params))
    if out.suffix == ".xlsx" and n_parcels > EXCEL_MAX_ROWS:
        raise CLIError(f"{output}: {n_parcels:,} parcels do not fit an Excel sheet ({EXCEL_MAX_ROWS:,} rows); "
                       "use .csv or .parquet")
    frame = generate_demo_portfolio(n_parcels, seed, params)
    prov = out.provenance({"generator": "models.demo.generate_demo_portfolio", "parcels": n_parcels, "seed": seed,
                           "region": params.region, "parameter_version": params.version,
                           "parameter_sha256": params.sha256})
    path = write_portfolio_table(frame, out, provenance=prov)
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
                   "parameter_sha256": pf.parameter_sha256,
                   "warnings": [w.as_dict() for w in pf.warnings]})
    else:
        show_portfolio_warnings(pf, file, limit=None)
        species = ", ".join(f"{k} {v}" for k, v in counts.items())
        click.echo(f"{file}: OK, {pf.n_parcels:,} parcels, {area:,.1f} ha; species: {species}")


#: top-level fields of a stress scenario file that a parameter file does not have
_SCENARIO_FIELDS = {"includes", "climate_pathway", "hazard", "severity", "growth", "forced_events", "price", "title",
                    "source", "confidence"}
#: top-level fields of a parameter file
_PARAMETER_FIELDS = {"region", "references", "carbon", "crediting", "species", "perils", "management",
                     "site_classes", "growth_uncertainty", "peril_uncertainty", "regeneration"}


def _detect_kind(file: str) -> str:
    """``validate``'s ``--kind auto``: what a file is, from its suffix and, for YAML/JSON, its fields. A .json
    file is a (GeoJSON) portfolio unless its fields make it a scenario or a parameter file."""
    suffix = Path(file).suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        return "portfolio"
    fallback = "portfolio" if suffix == ".json" else "parameters"
    from models._yaml import DataFileError, read_data_file

    try:
        data, _ = read_data_file(file, "file")
    except DataFileError:
        return fallback  # its loader reports why it cannot be read
    if not isinstance(data, dict):
        return fallback
    keys = set(data)
    if data.get("kind") == "stress_scenario" or (keys & _SCENARIO_FIELDS and not keys & _PARAMETER_FIELDS):
        return "scenario"
    if keys & _PARAMETER_FIELDS:
        return "parameters"
    return fallback


@click.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--kind", type=click.Choice(["auto", "portfolio", "parameters", "scenario"]), default="auto",
              show_default=True,
              help="What FILE is (auto: a YAML or JSON file that says `kind: stress_scenario` or holds scenario "
                   "fields is a scenario; any other .yaml/.yml a parameter file; anything else a portfolio).")
@parameters_option
@format_option
def validate(file, kind, parameters, fmt):
    """Check a portfolio file (CSV, Parquet, xlsx, GeoJSON), a parameter file (YAML) or a stress
    scenario file (YAML).

    Clean: exit 0 and a one-line summary (parcels, area, species counts). Not clean: exit 2 and every
    problem, one per line on stderr (file, row, column, value, reason), or with --format json a JSON
    list of problems on stdout.

    \b
    Examples:
      carbon-risk validate my_parcels.csv
      carbon-risk validate my_parcels.xlsx --format json
      carbon-risk validate models/parameters/lishui.yaml
      carbon-risk validate my_scenario.yaml
    """
    if kind == "auto":
        kind = _detect_kind(file)
    if kind == "scenario":
        from api.cli.commands.stress import validate_scenario_file

        validate_scenario_file(file, fmt)
    elif kind == "parameters":
        _validate_parameters(file, fmt)
    else:
        _validate_portfolio(file, parameters, fmt)


COMMANDS = [demo_portfolio, validate]
