"""``carbon-risk landscape``: build a region's pine wilt landscape from its registry of forest parcels."""

from __future__ import annotations

import hashlib

import click

from api.cli.common import (
    CLIError,
    OutputFile,
    echo_json,
    force_option,
    format_option,
    load_model,
    load_portfolio_or_demo,
    parameter_inputs,
    parameters_option,
    portfolio_input,
)


@click.command("landscape")
@click.argument("registry", type=click.Path(dir_okay=False), required=False)
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True,
              help="The landscape CSV to write (ix, iy, county, township, host area by pest-control level); "
                   "its provenance goes to a sibling .provenance.json. Never the landscape the parameter file "
                   "names: write a new file, then name it and its SHA-256 in the parameter file.")
@parameters_option
@force_option
@format_option
def landscape(registry, output, parameters, force, fmt):
    """Build the pine wilt landscape of a region from its registry of forest parcels.

    The epidemic of pine wilt disease spreads between forests whoever owns them, so every portfolio
    of a region -- one loan, an insurer's book, the whole city -- runs on the region's landscape:
    the 3-km cells of the registry's pine parcels, dilated by `grid_buffer_km`, with each cell's
    host area under each pest-control level and its largest township. REGISTRY is the region's forest
    inventory (any portfolio file; default: the shipped Lishui demo registry). Name the file and
    the SHA-256 this prints under `perils.pine_wilt.landscape` in the parameter file.

    \b
    Examples:
      carbon-risk landscape -o lishui_pine_wilt_landscape.csv
      carbon-risk landscape city_inventory.parquet --parameters region.yaml -o region_landscape.csv
    """
    from models.perils.pine_wilt import PineWilt
    from models.perils.pine_wilt_landscape import landscape_csv

    params = load_model(parameters)
    block = params.perils.get("pine_wilt")
    if block is None:
        raise CLIError(f"{params.path}: the parameter file has no perils.pine_wilt block")
    reg_input = portfolio_input(registry)
    out = OutputFile(output, suffixes=(".csv",), force=force,
                     inputs=[("registry", reg_input[1]), *parameter_inputs(params)])
    path = out.path
    reg = load_portfolio_or_demo(registry, params)
    # the registry's own grid, as a portfolio without a landscape gets it
    peril = PineWilt(block.model_copy(update={"landscape": None}), params, reg)
    if peril.grid.n_cells == 0:
        raise CLIError(f"{registry or 'the demo registry'}: no pine host parcels below the altitude limit; "
                       "no landscape to build")
    land = peril.as_landscape()
    data = landscape_csv(land)  # what write_landscape writes; its hash is what the parameter file names
    digest = hashlib.sha256(data).hexdigest()
    summary = {"file": str(path), "sha256": digest, "cells": land.n_cells,
               "cells_with_hosts": int((land.host_area_ha > 0).sum()), "host_area_ha": float(land.host_area_ha.sum()),
               "registry": registry or "demo", "registry_parcels": int(reg.n_parcels),
               "cell_size_km": block.cell_size_km.value,
               "grid_reference_latitude_deg": block.grid_reference_latitude_deg.value,
               "grid_buffer_km": block.grid_buffer_km.value, "altitude_limit_m": block.altitude_limit_m.value}
    prov = out.provenance({"parameter_sha256": params.sha256, "parameter_version": params.version,
                           "region": params.region, **{k: v for k, v in summary.items() if k != "file"}})
    out.write(lambda tmp: tmp.write_bytes(data), provenance=prov)
    if fmt == "json":
        echo_json(summary)
        return
    click.echo(f"wrote {path}: {land.n_cells:,} cells ({summary['cells_with_hosts']:,} with pine hosts, "
               f"{summary['host_area_ha']:,.0f} ha) from {reg.n_parcels:,} registry parcels")
    click.echo("name it in the parameter file under perils.pine_wilt:")
    click.echo(f"    landscape: {{file: {path.name}, sha256: {digest}, cell_size_km: {summary['cell_size_km']}, "
               f"grid_reference_latitude_deg: {summary['grid_reference_latitude_deg']}, "
               f"grid_buffer_km: {summary['grid_buffer_km']}, altitude_limit_m: {summary['altitude_limit_m']}, "
               "source: ..., confidence: ...}")


COMMANDS = [landscape]
