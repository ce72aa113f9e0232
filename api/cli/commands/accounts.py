"""``carbon-risk accounts``: today's carbon stock and expected sink at the five account levels."""

from __future__ import annotations

import click

from api.cli.common import (
    OutputFile,
    ProgressBar,
    echo_json,
    force_option,
    format_option,
    load_model,
    load_portfolio_or_demo,
    note,
    parameter_inputs,
    parameters_option,
    portfolio_input,
    portfolio_option,
    provenance_frame,
)
from api.cli.tables import render_table
from models.portfolio import LEVELS


@click.command("accounts")
@portfolio_option
@parameters_option
@click.option("--level", type=click.Choice(["portfolio", *LEVELS, "all"]), default="county", show_default=True,
              help="Account level to show (all: every level; JSON always carries the whole tree).")
@click.option("--paths", type=click.IntRange(0, 1_000_000), default=1000, show_default=True,
              help="Monte Carlo paths for the expected sink (0: deterministic figures only).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=20260101, show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Also write the table: .csv (provenance in a sibling .provenance.json), .xlsx (with a "
                   "provenance sheet) or .json (tree and provenance).")
@force_option
@format_option
def accounts(portfolio, parameters, level, paths, seed, output, force, fmt):
    """Carbon stock (tCO2e, by both methods) and expected annual sink, by account level.

    Every level sums exactly from the villages up. The expected sink is simulated (one year, every
    peril) and shown with its Monte Carlo standard error.

    \b
    Examples:
      carbon-risk accounts
      carbon-risk accounts --level township --portfolio parcels.xlsx
      carbon-risk accounts --format json > accounts.json
    """
    from finance_engine.accounts import carbon_accounts

    params = load_model(parameters)
    out = OutputFile(output, suffixes=(".csv", ".xlsx", ".json"), force=force,
                     inputs=[portfolio_input(portfolio), *parameter_inputs(params)]) if output else None
    pf = load_portfolio_or_demo(portfolio, params)
    note(f"{pf.n_parcels} parcels, {pf.area_ha.sum():,.0f} ha from {pf.source}")
    acc = carbon_accounts(pf, params, sink_paths=paths, seed=seed, progress=ProgressBar("expected sink"))
    if out is not None:
        _write(acc, out)
        note(f"wrote {output}" + (f" and {out.sidecar}" if out.sidecar else ""))
    if fmt == "json":
        d = acc.to_dict()
        d.pop("rows")
        d["tree"] = acc.tree()
        echo_json(d)
        return
    t = acc.table if level == "all" else acc.level(level)
    cols = ["level", *([] if level in ("portfolio",) else ([level] if level != "all" else list(LEVELS)))]
    show = cols + [c for c in ("parcels", "area_ha", "stock_bef_tco2e", "stock_fang_tco2e",
                               "potential_sink_tco2e_per_yr", "expected_sink_tco2e_per_yr",
                               "expected_sink_tco2e_per_yr_mc_se", "expected_sink_tco2e_per_yr_parameter_sd",
                               "expected_loss_tco2e_per_yr", "expected_loss_tco2e_per_yr_mc_se",
                               "expected_loss_tco2e_per_yr_parameter_sd") if c in t.columns]
    click.echo(render_table(t[show]))
    p = acc.provenance
    click.echo(f"\nmodel {p['model_version']}; parameters {p['region']} {p['parameter_version']} "
               f"sha256 {p['parameter_sha256'][:12]}"
               + (f"; sink from {p['paths']} paths, seed {p['seed']}, perils: {', '.join(p['perils'])}"
                  if "paths" in p else ""))


def _write(acc, out: OutputFile) -> None:
    import json

    table = acc.table[[c for c in acc.table.columns if not c.endswith("_kg")]]
    prov = out.provenance(acc.provenance)
    if out.suffix == ".csv":
        out.write(lambda p: table.to_csv(p, index=False), provenance=prov)
    elif out.suffix == ".xlsx":
        import pandas as pd

        def workbook(p):
            with pd.ExcelWriter(p, engine="openpyxl") as xw:
                table.to_excel(xw, index=False, sheet_name="accounts")
                provenance_frame(prov).to_excel(xw, index=False, sheet_name="provenance")

        out.write(workbook)
    else:
        out.write_text(json.dumps({"provenance": acc.provenance, "output": {k: v for k, v in prov.items()
                                                                           if k != "result"},
                                   "tree": acc.tree()}, ensure_ascii=False, indent=2, default=str))


COMMANDS = [accounts]
