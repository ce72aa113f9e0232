"""``carbon-risk simulate``: the Monte Carlo run, summarised, with loss tables on request."""

from __future__ import annotations

from pathlib import Path

import click

from api.cli.common import (
    CLIError,
    ProgressBar,
    echo_json,
    format_option,
    load_model,
    load_portfolio_or_demo,
    note,
    parameters_option,
    portfolio_option,
    show_model_notes,
    simulation_options,
)
from api.cli.tables import render_table

LEVEL_CHOICES = ["portfolio", "province", "city", "county", "township", "village", "project_id",
                 "species_group", "parcel"]


@click.command("simulate")
@portfolio_option
@parameters_option
@simulation_options
@click.option("--level", "levels", multiple=True, type=click.Choice(LEVEL_CHOICES), default=("portfolio", "county"),
              show_default=True, help="Levels to report (repeat the option for several).")
@click.option("--loss-table", "loss_table_level", type=click.Choice(LEVEL_CHOICES), default=None,
              help="Keep an event loss table at this level.")
@click.option("--no-perils", is_flag=True, help="Growth only (no fire, pest, wind, ice, drought).")
@click.option("--output", "-o", type=click.Path(file_okay=False), default=None,
              help="Directory for summary, horizon, event and year loss tables and provenance.")
@click.option("--output-format", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@format_option
def simulate_cmd(portfolio, parameters, years, paths, seed, carbon_method, workers, chunk_paths, scheduler,
                 levels, loss_table_level, no_perils, output, output_format, fmt):
    """Simulate growth, perils, carbon and credits for every parcel and path.

    Prints the whole-horizon summary: mean, Monte Carlo standard error (more paths narrow it),
    parameter standard deviation (better data would narrow it), P5/P50/P95 and TVaR95.

    \b
    Examples:
      carbon-risk simulate --years 30 --paths 2000
      carbon-risk simulate --level county --loss-table county -o out/
      carbon-risk simulate --workers 2 --scheduler local-cluster
    """
    from finance_engine.simulation import simulate
    from models.dynamics import SimulationSwitches

    params = load_model(parameters)
    pf = load_portfolio_or_demo(portfolio, params)
    switches = SimulationSwitches(perils=()) if no_perils else SimulationSwitches()
    try:
        res = simulate(pf, params, years=years, paths=paths, seed=seed, levels=levels, carbon_method=carbon_method,
                       switches=switches, loss_table_level=loss_table_level, chunk_paths=chunk_paths,
                       workers=workers, scheduler=scheduler, progress=ProgressBar("simulating"))
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    show_model_notes(res.provenance)
    if output:
        files = res.write(Path(output), output_format)
        note("wrote " + ", ".join(str(f) for f in files))
    if fmt == "json":
        echo_json(res.to_dict())
        return
    h = res.horizon
    h = h[h.level.isin(["portfolio"])] if "portfolio" in levels else h
    cols = ["level", "group", "metric", "mean", "mc_se", "parameter_sd", "p05", "p50", "p95", "tvar95", "tvar95_se"]
    click.echo(f"Whole horizon ({years} years, {paths} paths), tCO2e:")
    click.echo(render_table(h[[c for c in cols if c in h.columns]]))
    click.echo("mc_se / tvar95_se: Monte Carlo standard errors; each percentile's 95% interval is in the "
               "pNN_ci_low / pNN_ci_high columns of --format json and --output")
    p = res.provenance
    click.echo(f"\nmodel {p['model_version']} ({p['code_version']}), parameters {p['parameter_version']} "
               f"sha256 {p['parameter_sha256'][:12]}, seed {p['seed']}, {p['paths']} paths, "
               f"perils: {', '.join(p['perils']) or 'none'}; {res.run_info['elapsed_s']:.1f}s on {res.run_info['backend']}")


COMMANDS = [simulate_cmd]
