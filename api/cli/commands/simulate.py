"""``carbon-risk simulate``: the Monte Carlo run, summarised, with loss tables on request."""

from __future__ import annotations


import click

from api.cli.common import (
    LEVEL_CHOICES,
    CLIError,
    OutputDir,
    crediting_from_options,
    crediting_option_names,
    crediting_options,
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
    show_model_notes,
    simulation_options,
)
from api.cli.tables import render_table, with_parameter_sd_cells


@click.command("simulate")
@portfolio_option
@parameters_option
@simulation_options
@click.option("--level", "levels", multiple=True, type=click.Choice(LEVEL_CHOICES), default=("portfolio", "county"),
              show_default=True, help="Levels to report (repeat the option for several).")
@click.option("--loss-table", "loss_table_level", type=click.Choice(LEVEL_CHOICES), default=None,
              help="Keep an event loss table at this level.")
@click.option("--no-perils", is_flag=True, help="Growth only (no fire, pest, wind, ice, drought).")
@crediting_options()
@click.option("--output", "-o", type=click.Path(), default=None,
              help="Folder for the summary, horizon and initial-stock tables and provenance, the year loss table "
                   "when portfolio is among the --level(s) (the default) and the event loss table with "
                   "--loss-table. A new or empty folder is written; a non-empty one only with --force: a folder of a "
                   "previous run's files is then replaced by this run's, any other keeps its own files beside them.")
@click.option("--output-format", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@force_option
@format_option
def simulate_cmd(portfolio, parameters, years, paths, seed, carbon_method, workers, chunk_paths, scheduler,
                 levels, loss_table_level, no_perils, crediting_start_year, crediting_period_years, output,
                 output_format, force, fmt):
    """Simulate growth, perils, carbon and credits for every parcel and path.

    Prints the whole-horizon summary: mean, Monte Carlo standard error (more paths narrow it),
    parameter standard deviation with its 95 % interval (better data would narrow it; "not resolved"
    where it is below the Monte Carlo noise at these paths), P5/P50/P95 and TVaR95.

    -o DIR writes into a new or empty folder; a folder that already holds files (a previous run's
    too) is written only with --force.

    \b
    Examples:
      carbon-risk simulate --years 30 --paths 2000
      carbon-risk simulate --level portfolio --level county --loss-table county -o out/
      carbon-risk simulate --paths 2000 -o out/ --force      # replace out/'s previous run
      carbon-risk simulate --workers 2 --scheduler local-cluster
      carbon-risk simulate --crediting-start-year 2021 --crediting-period-years 30
    """
    from finance_engine.simulation import simulate
    from models.dynamics import SimulationSwitches

    params = load_model(parameters)
    out_dir = OutputDir(output, force=force, inputs=[portfolio_input(portfolio), *parameter_inputs(params)]) \
        if output else None
    pf = load_portfolio_or_demo(portfolio, params)
    switches = SimulationSwitches(perils=()) if no_perils else SimulationSwitches()
    crediting = crediting_from_options(crediting_start_year, crediting_period_years)
    try:
        res = simulate(pf, params, years=years, paths=paths, seed=seed, levels=levels, carbon_method=carbon_method,
                       switches=switches, crediting=crediting, loss_table_level=loss_table_level,
                       chunk_paths=chunk_paths,
                       workers=workers, scheduler=scheduler, progress=ProgressBar("simulating"))
    except ValueError as exc:
        raise CLIError(crediting_option_names(str(exc)) if crediting else str(exc)) from exc
    show_model_notes(res.provenance)
    for line in quantile_notes(res.provenance):
        note(line)
    if out_dir is not None:
        names = out_dir.write(lambda tmp: [f.name for f in res.write(tmp, output_format)])
        note(f"wrote {output}: " + ", ".join(names))
    if fmt == "json":
        echo_json(res.to_dict())
        return
    h = res.horizon
    cols = ["level", "group", "metric", "mean", "mc_se", "parameter_sd", "parameter_sd_ci95_low",
            "parameter_sd_ci95_high", "p05", "p50", "p95", "tvar95", "tvar95_se"]
    click.echo(f"Whole horizon ({years} years, {paths} paths), tCO2e:")
    full = "portfolio" if "portfolio" in levels else levels[0]
    # the parameter sd with its 95 % interval, a clipped 0 "not resolved" (README §5), as accounts and stress print it
    drawn = switches.draws_parameters
    shown = with_parameter_sd_cells(h.loc[h.level == full, [c for c in cols if c in h.columns]], drawn)
    click.echo(render_table(shown.drop(columns=[c for c in ("parameter_sd_ci95_low", "parameter_sd_ci95_high")
                                                if c in shown.columns])))
    click.echo("mc_se / tvar95_se: Monte Carlo standard errors; each percentile's 95% interval is in the "
               "pNN_ci_low / pNN_ci_high columns of --format json and --output"
               + ("; parameter_sd: the spread from the uncertain parameters (better data would narrow it) with its "
                  "95% interval; not resolved: the spread is below the Monte Carlo noise at these paths (its "
                  "estimate fell below 0), the interval's upper end bounds it" if drawn else ""))
    for lv in dict.fromkeys(levels):
        if lv != full:
            click.echo(f"\nBy {lv} (mean over paths, tCO2e; every statistic of every level: --format json or -o DIR):")
            click.echo(render_table(_by_group(h[h.level == lv])))
    p = res.provenance
    click.echo(f"\nmodel {p['model_version']} ({p['code_version']}), parameters {p['parameter_version']} "
               f"sha256 {p['parameter_sha256'][:12]}, seed {p['seed']}, {p['paths']} paths, "
               f"perils: {', '.join(p['perils']) or 'none'}; {res.run_info['elapsed_s']:.1f}s on {res.run_info['backend']}")


def quantile_notes(provenance: dict) -> list[str]:
    """One line per level the run summarised from streamed moments only (provenance
    ``levels_without_quantiles``): why it has no quantiles or TVaR, and how to get them."""
    out = []
    for lv, why in (provenance.get("levels_without_quantiles") or {}).items():
        how = ("a coarser --level" if "groups, over" in why
               else "fewer --paths, a coarser --level, or a larger per-path budget (simulate(per_path_budget_mib=...) "
                    "in Python)")
        out.append(f"note: {lv}: no quantiles or TVaR ({why}); its mean, mc_se and parameter_sd are reported. "
                   f"For quantiles: {how}")
    return out


#: the columns of the per-group tables: metric (and statistic) -> column
BY_GROUP = (("stock_end_tco2e", "mean", "stock_end"), ("cumulative_sink_tco2e", "mean", "sink"),
            ("cumulative_loss_tco2e", "mean", "loss"), ("cumulative_loss_tco2e", "mc_se", "loss_mc_se"),
            ("cumulative_loss_tco2e", "p95", "loss_p95"), ("cumulative_credits_issued_tco2e", "mean", "credits"))


def _by_group(h):
    """One row per group of a level: its end stock, sink, loss (with its error and P95) and credits."""
    import pandas as pd

    out = pd.DataFrame({"group": pd.unique(h["group"])})
    for metric, stat, col in BY_GROUP:
        m = h[h.metric == metric].set_index("group")
        if stat in m.columns and len(m):
            out[col] = out["group"].map(m[stat])
    return out


COMMANDS = [simulate_cmd]
