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

    Every level sums exactly from the villages up; each row is named by its full path (province down to
    its level). The expected sink is simulated (one year, every peril, the rotation harvest) and shown
    with its parts (growth - mortality - loss - harvest), its Monte Carlo standard error and its
    parameter sd with that sd's 95 % interval. These are stock changes, not creditable sinks.

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
    click.echo(render_table(account_rows(t, level)))
    p = acc.provenance
    click.echo(f"\nmodel {p['model_version']}; parameters {p['region']} {p['parameter_version']} "
               f"sha256 {p['parameter_sha256'][:12]}"
               + (f"; sink from {p['paths']} paths, seed {p['seed']}, perils: {', '.join(p['perils'])}, "
                  f"carbon method {p['sink_carbon_method']}" if "paths" in p else ""))
    click.echo(NOTES)
    if p.get("stock_fang_fallback_species"):
        click.echo(f"stock_fang: {', '.join(p['stock_fang_fallback_species'])} have no Fang function and are "
                   f"converted by BEF (stock_fang_fallback_share: their share of the Fang stock).")


#: what the terminal table's columns mean (the units of ``CarbonAccounts.units``, shortened)
NOTES = ("\npotential_sink: the yield curves' net change without perils and without harvest. expected sink = "
         "growth - mortality - loss - harvest (first year, Monte Carlo means). These are stock changes, not "
         "creditable sinks: no baseline, leakage or buffer is applied.\n"
         "mc_se: Monte Carlo standard error (more paths narrow it); parameter_sd: the spread from the uncertain "
         "parameters (better data would narrow it) with its 95 % interval; not resolved: the spread is below the "
         "Monte Carlo noise at these paths (its estimate fell below 0), the interval's upper end bounds it.")

#: the account columns shown in the terminal, in order (a parameter sd with its interval, the Fang fallback as a share)
SHOWN = ("parcels", "area_ha", "stock_bef_tco2e", "stock_fang_tco2e", "stock_fang_fallback_share",
         "potential_sink_tco2e_per_yr", "expected_sink_tco2e_per_yr", "expected_sink_tco2e_per_yr_mc_se",
         "expected_sink_tco2e_per_yr_parameter_sd", "expected_growth_tco2e_per_yr",
         "expected_mortality_tco2e_per_yr", "expected_loss_tco2e_per_yr", "expected_loss_tco2e_per_yr_mc_se",
         "expected_loss_tco2e_per_yr_parameter_sd", "expected_harvest_tco2e_per_yr",
         "expected_harvest_tco2e_per_yr_mc_se")


def account_rows(t, level: str):
    """The terminal table of accounts rows ``t`` shown at ``level``: each row named by its full path (every
    parent level down to its own, so two townships of one name in different counties differ), a parameter sd
    as ``sd [low, high]`` (its 95 % interval) or ``not resolved [0, high]``, the Fang fallback as a share."""
    import pandas as pd

    from finance_engine.reports.html import NOT_RESOLVED, fmt_number, parameter_sd_resolved

    depth = len(LEVELS) if level == "all" else (0 if level == "portfolio" else LEVELS.index(level) + 1)
    out = pd.DataFrame({"level": t["level"].to_numpy()})
    for lv in LEVELS[:depth]:
        out[lv] = t[lv].to_numpy()
    for col in SHOWN:
        if col not in t.columns:
            continue
        if col.endswith("_parameter_sd"):
            se, lo, hi = t[col[:-len("parameter_sd")] + "mc_se"], t[f"{col}_ci95_low"], t[f"{col}_ci95_high"]
            out[col] = [("-" if v != v else
                          f"{fmt_number(v) if parameter_sd_resolved(v, e) else NOT_RESOLVED} "
                          f"[{fmt_number(a)}, {fmt_number(b)}]")
                         for v, e, a, b in zip(t[col], se, lo, hi)]
        elif col == "stock_fang_fallback_share":
            out[col] = [f"{v:.0%}" if v == v else "-" for v in t[col]]
        else:
            out[col] = t[col].to_numpy()
    return out


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
