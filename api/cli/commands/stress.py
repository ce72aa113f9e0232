"""``carbon-risk stress``: scenarios against the baseline on common random numbers; reverse stress."""

from __future__ import annotations

import json

import click

from api.cli.common import (
    FINITE,
    CLIError,
    OutputFile,
    ProgressBar,
    echo_json,
    force_option,
    format_option,
    load_model,
    load_portfolio_or_demo,
    note,
    one_line,
    parameter_inputs,
    parameters_option,
    portfolio_input,
    portfolio_option,
    provenance_frame,
    show_model_notes,
)
from api.cli.tables import render_table

LEVEL_CHOICES = ["county", "township", "village", "project_id", "species_group"]


def _common(f):
    opts = [
        portfolio_option, parameters_option,
        click.option("--registry", "registry_file", type=click.Path(dir_okay=False), default=None,
                     help="Loans and policies against the portfolio (YAML/JSON). 'demo': the shipped example."),
        click.option("--years", type=click.IntRange(1, 100), default=10, show_default=True),
        click.option("--paths", type=click.IntRange(8, 1_000_000), default=1000, show_default=True),
        click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=2026, show_default=True),
        click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _registry_path(path):
    if path == "demo":
        from finance_engine.stress.registry import demo_registry_path

        return str(demo_registry_path())
    return path


def _registry(path):
    if path is None:
        return None
    from finance_engine.stress.registry import RegistryError, read_registry

    path = _registry_path(path)
    try:
        reg = read_registry(path)
    except RegistryError as exc:
        raise CLIError(one_line(exc)) from exc
    return reg  # (loan terms are finite: LoanTerms refuses NaN and infinity)


def _bind(reg, pf, params, registry_file) -> None:
    """Bind the registry's loans and policies to the portfolio before any simulation (unknown projects or
    parcels, overlapping units: exit 2 naming the registry entry)."""
    if reg is None or not (reg.loans or reg.policies):
        return
    from finance_engine.stress.registry import RegistryError, bind_registry

    try:
        bind_registry(reg, pf, params)
    except RegistryError as exc:
        raise CLIError(f"{_registry_path(registry_file)}: {one_line(exc)}") from exc


def _scenarios(names, use_all):
    """The scenarios asked for (``--all``: the library, then any ``-s``), each once. Two different scenarios
    with one name would share one column of the results: refused, naming both sources."""
    from finance_engine.stress.scenarios import ScenarioError, load_scenario, scenario_library

    refs = [*(scenario_library() if use_all else ()), *names]
    if not refs:
        raise CLIError("name at least one --scenario (a library name or a file) or give --all")
    out, source = [], {}
    for r in refs:
        try:
            s = load_scenario(r)
        except ScenarioError as exc:
            raise CLIError(one_line(exc)) from exc
        if s.name in source:
            first, other = source[s.name]
            if other.sha256 == s.sha256:
                continue  # the same scenario named twice: run once
            raise CLIError(f"scenarios {first!r} and {r!r} are both named {s.name!r} but differ; a stress test "
                           "reports each scenario under its name: give one of them another `name:`")
        if s.name == "baseline" and not s.is_baseline:
            raise CLIError(f"scenario {r!r} is named 'baseline' but changes something; the baseline is the "
                           "unchanged run every scenario is compared with: give it another `name:`")
        source[s.name] = (r, s)
        out.append(s)
    return out


def _scenario_inputs(scns) -> list[tuple[str, str]]:
    """The scenario files read (each scenario and the files it includes)."""
    return [(f"scenario file of {s.name}", f) for s in scns for f, _ in s.files]


def _warn_timing(scns, years: int, reg, pf=None, params=None) -> list[str]:
    """What the scenarios' timing leaves out (finance_engine.stress.run.timing_notes) and, given the portfolio
    and the parameters, the areas their forced events name that hold no parcel of it (a county it lacks, a name
    that is no county of the region: finance_engine.stress.areas.forced_area_notes), said before the run;
    returns the notes said, which the result repeats."""
    from finance_engine.stress.run import stress_horizon, timing_notes

    H = stress_horizon(years, reg)
    said = []
    for s in scns:
        if pf is not None and params is not None:
            from finance_engine.stress.areas import forced_area_notes

            said += forced_area_notes(s, pf, params, H)
        said += timing_notes(s, years, H)
    for n in said:
        note(f"warning: {n}")
    return said


@click.group("stress", invoke_without_command=True)
@_common
@click.option("--scenario", "-s", "scenario_refs", multiple=True, metavar="NAME|FILE",
              help="A scenario of the library or a scenario file; repeat for several.")
@click.option("--all", "use_all", is_flag=True, help="Every scenario of the shipped library (and any --scenario).")
@click.option("--level", "levels", multiple=True, type=click.Choice(LEVEL_CHOICES), default=("county",),
              show_default=True, help="Account level(s) reported besides the portfolio; repeat for several.")
@click.option("--levers", is_flag=True, help="Also the policy levers (with a registry) and management levers.")
@click.option("--buffer", "with_buffer", is_flag=True, help="Also buffer adequacy vs the Verra NPRT score.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write a report: .html (self-contained), .xlsx (one sheet per table, and provenance) or .json.")
@force_option
@format_option
@click.pass_context
def stress(ctx, portfolio, parameters, registry_file, years, paths, seed, workers, scenario_refs, use_all, levels,
           levers, with_buffer, output, force, fmt):
    """Stress scenarios against the baseline: carbon, credits, losses, banks, insurer, budgets.

    \b
    Examples:
      carbon-risk stress --all --paths 500
      carbon-risk stress -s ice_storm_2008 -s carbon_price_crash --registry demo -o stress.html
      carbon-risk stress --all -s my_scenario.yaml          # the library and a file of your own
      carbon-risk stress -s my_scenario.yaml --level township --format json
      carbon-risk stress list
      carbon-risk stress reverse --shock price_drop --metric collateral_coverage --registry demo
    """
    if ctx.invoked_subcommand is not None:
        return
    from finance_engine.stress.run import StressSettings, run_stress_test

    scns = _scenarios(scenario_refs, use_all)
    reg = _registry(registry_file)
    params = load_model(parameters)
    out = OutputFile(output, suffixes=(".html", ".htm", ".xlsx", ".json"), force=force,
                     inputs=[portfolio_input(portfolio), *parameter_inputs(params),
                             ("registry", _registry_path(registry_file)), *_scenario_inputs(scns)]) if output else None
    pf = load_portfolio_or_demo(portfolio, params)
    _bind(reg, pf, params, registry_file)
    _warn_timing(scns, years, reg, pf, params)  # the result's notes repeat them, under the tables
    lv = tuple(dict.fromkeys(("portfolio", *levels, "county", "township")))
    st = StressSettings(years=years, paths=paths, seed=seed, levels=lv)
    bar = ProgressBar("stress test")  # the baseline's and every scenario's runs as one bar
    res = run_stress_test(pf, params, scns, registry=reg, settings=st, workers=workers, progress=bar.note,
                          on_progress=bar)
    show_model_notes(res.provenance)
    extra = _extras(res, pf, params, reg, st, scns, levers, with_buffer, workers)
    if out is not None:
        _write(res, out, extra)
        note(f"wrote {output}")
    if fmt == "json":
        echo_json({**res.to_dict(), **{k: v.to_dict(orient="records") for k, v in extra.items()}})
        return
    p = res.provenance
    click.echo(f"{pf.n_parcels:,} parcels, {paths} paths x {years} years, seed {seed} (common random numbers); "
               f"model {p['model_version']}, parameters {p['parameter_version']} sha256 {p['parameter_sha256'][:12]}")
    on = bool(res.settings.switches.parameter_uncertainty)
    head = _headline(res.portfolio, parameter_uncertainty=on)
    click.echo(render_table(head))
    click.echo("value ± Monte Carlo standard error (of the paired per-path difference for 'vs baseline' rows); "
               "then, for carbon figures, the spread from the uncertain growth and peril parameters (param sd, "
               "with its 95 % interval in brackets)"
               if on else "value ± Monte Carlo standard error (of the paired per-path difference for 'vs baseline' "
               "rows); parameter uncertainty is off in this run, so there is no param sd")
    if head.astype(str).apply(lambda c: c.str.contains(NOT_RESOLVED_TEXT, regex=False)).to_numpy().any():
        from finance_engine.reports.html import NOT_RESOLVED_FOOTNOTE

        click.echo(NOT_RESOLVED_FOOTNOTE)
    c = res.concentration[(res.concentration.level == "county") & (res.concentration["rank"] == 1)]
    if not c.empty:
        click.echo("\nCounty losing most per scenario:")
        click.echo(render_table(c[["scenario", "group", "extra_loss_tco2e", "extra_loss_mc_se",
                                   "extra_loss_share_of_stock"]]))
    for k, v in extra.items():
        click.echo(f"\n{k}:")
        if k == "buffer":
            from finance_engine.stress.buffer import BUFFER_NOTE

            click.echo(render_table(_buffer_table(v)))
            click.echo(BUFFER_NOTE)
        else:
            click.echo(render_table(v))
    if res.notes:  # with the tables: a forced event that hit nothing reads beside its zero effect
        click.echo("\nNotes:")
        for n in res.notes:
            click.echo(f"- {n}")


def _buffer_table(df):
    """The buffer-adequacy table as the terminal shows it (:func:`finance_engine.stress.buffer.buffer_display_table`:
    each buffer quantile with its 95 % interval, or not resolved and the paths that would resolve it; the JSON and
    the workbook keep every field)."""
    from api.cli.tables import _fmt
    from finance_engine.stress.buffer import buffer_display_table

    return buffer_display_table(df, fmt=_fmt)


#: the headline figures of a stress test, each shown with its Monte Carlo standard error
HEADLINE = ("cumulative_loss_tco2e", "cumulative_loss_tco2e_diff", "cumulative_credits_issued_tco2e_diff",
            "cumulative_credits_value_cny_diff", "bank_collateral_coverage",
            "bank_share_of_lending_with_collateral_below_balance", "insurer_gross_loss_ratio",
            "budget_expected_annual_total_cny")


#: how a parameter sd the paths do not resolve reads (as in the HTML report)
NOT_RESOLVED_TEXT = "not resolved"


def _param_sd_text(psd, mc_se) -> str:
    """A parameter sd as the HTML report shows it (:func:`finance_engine.reports.html.fmt_parameter_sd`): ``not
    resolved`` for a clipped 0 of a figure that varies, and for NaN (an unresolved sd the summaries leave
    without a point estimate, beside its interval); else the number."""
    import pandas as pd

    from api.cli.tables import _fmt
    from finance_engine.reports.html import parameter_sd_resolved

    if psd is None or pd.isna(psd) or not parameter_sd_resolved(float(psd), None if mc_se is None or pd.isna(mc_se)
                                                                else float(mc_se)):
        return NOT_RESOLVED_TEXT
    return _fmt(psd)


def _param_sd_interval_text(low, high) -> str:
    """A parameter sd's 95 % interval as the accounts' terminal table shows it, `` [low, high]``; empty where an end
    is missing (a result without it, or one not computable: fewer than two parameter sets)."""
    import pandas as pd

    from api.cli.tables import _fmt

    if any(x is None or pd.isna(x) for x in (low, high)):
        return ""
    return f" [{_fmt(float(low))}, {_fmt(float(high))}]"


def _headline(portfolio, parameter_uncertainty: bool = True):
    """One row per headline figure, one column per scenario: ``value ± standard error``, then ``param sd
    ... [low, high]`` (with its 95 % interval where the row has it) where the figure has a parameter spread (the
    carbon figures and their values): ``not resolved`` in the cases the HTML report says so (a clipped 0, or
    NaN); none at all when the run has no parameter uncertainty (the engine then fills the column with zeros)."""
    import pandas as pd

    from api.cli.tables import _fmt

    rows = []
    for c in HEADLINE:
        if c not in portfolio:
            continue
        se = f"{c[:-4]}_mc_se_cny" if c.endswith("_cny") else f"{c}_mc_se"
        label = c.replace("cumulative_", "").replace("_diff", " vs baseline")
        row = {"figure": label}
        has_psd = parameter_uncertainty and f"{c}_parameter_sd" in portfolio
        for _, r in portfolio.iterrows():
            v, e = r[c], r.get(se)
            text = _fmt(v) if e is None or pd.isna(e) else f"{_fmt(v)} ± {_fmt(e)}"
            if has_psd:
                ci = _param_sd_interval_text(r.get(f"{c}_parameter_sd_ci95_low"), r.get(f"{c}_parameter_sd_ci95_high"))
                text = f"{text}, param sd {_param_sd_text(r.get(f'{c}_parameter_sd'), e)}{ci}"
            row[r["scenario"]] = text
        rows.append(row)
    return pd.DataFrame(rows)


def _extras(res, pf, params, reg, st, scns, levers, with_buffer, workers):
    import pandas as pd

    extra = {}
    if not (levers or with_buffer):
        return extra
    from finance_engine.simulation.engine import require_per_path
    from finance_engine.stress.registry import bind_registry
    from finance_engine.stress.run import STRESS_PER_PATH_BUDGET_MIB, run_scenario
    from finance_engine.stress.scenarios import load_scenario

    bound = bind_registry(reg, pf, params) if reg is not None and reg.loans else None
    run_pf = bound.portfolio if bound is not None else pf
    H = max([st.years] + [ln.terms.crediting_horizon_years for ln in (reg.loans if bound else [])])
    order = [load_scenario("baseline"), *[s for s in scns if s.name != "baseline"]]
    # the policy levers compare every scenario's run with the baseline's: all of them held at once; the buffer
    # alone takes one run at a time (each run keeps its levels within half the stress budget, as the stress
    # test's own runs: run_scenario)
    hold = levers and bound is not None
    together = len(order) if hold else 1
    try:
        require_per_path(run_pf, params, ("portfolio", *st.levels, "project_id"), H, st.paths, switches=st.switches,
                         per_path_budget_mib=STRESS_PER_PATH_BUDGET_MIB, runs=max(2, together),
                         what="the stress test's " + ("policy levers" if together > 1 else "buffer"))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    def run(s):
        return run_scenario(run_pf, params, s, st, horizon_years=H, extra_levels=("project_id",), workers=workers)

    runs = [run(s) for s in order] if hold else None  # (the baseline alone too: policy_levers takes no others)
    if with_buffer:
        from finance_engine.stress.buffer import buffer_report

        rows, scores = [], []
        for s in order:
            r = runs[order.index(s)] if runs is not None else run(s)  # one at a time unless held for the levers
            b = buffer_report(r, params, st.years)
            del r
            scores.append(b.pop("nprt_scores").assign(scenario=s.name))
            rows.append(b)
        extra["buffer"] = pd.DataFrame(rows)
        extra["nprt_scores"] = pd.concat(scores, ignore_index=True)
    if levers:
        from finance_engine.stress.levers import default_management_actions, management_levers, policy_levers

        if bound is not None:
            extra["policy_levers"] = policy_levers(bound, runs[0], runs[1:], st)
        extra["management_levers"] = management_levers(pf, params, default_management_actions(pf), st, workers=workers)
    return extra


def _write(res, out: OutputFile, extra) -> None:
    if out.suffix == ".json":
        payload = {**res.to_dict(), **{k: v.to_dict(orient="records") for k, v in extra.items()}}
        out.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=str))
    elif out.suffix == ".xlsx":
        from finance_engine.reports.stress_report import write_stress_workbook

        prov = out.provenance(res.provenance)

        def workbook(p):
            # the provenance sheet as every command writes it: the result's, and the command and its inputs
            write_stress_workbook(res, p, extra, provenance=provenance_frame(prov))

        out.write(workbook)
    else:
        from finance_engine.reports.stress_report import render_stress_report

        out.write_text(render_stress_report(res, extra=extra))


@stress.command("list")
@format_option
def list_scenarios(fmt):
    """The shipped scenario library."""
    from finance_engine.stress.scenarios import load_scenario, scenario_library

    rows = [{"name": n, "version": (s := load_scenario(n)).version, "title": s.title, "sha256": s.sha256[:12]}
            for n in scenario_library()]
    if fmt == "json":
        echo_json(rows)
    else:
        import pandas as pd

        click.echo(render_table(pd.DataFrame(rows)))


@stress.command("reverse")
@_common
@click.option("--shock", required=True, metavar="KIND:PERIL|price_drop",
              help="hazard:<peril>, severity:<peril> or price_drop.")
@click.option("--metric", type=click.Choice(["collateral_coverage", "insured_loss_over_capital", "buffer_use",
                                             "p_buffer_exhausted"]), default="collateral_coverage", show_default=True)
@click.option("--threshold", type=FINITE, default=1.0, show_default=True)
@click.option("--lo", type=FINITE, default=None,
              help="Lower end of the search bracket (default 1, or 0 for price_drop).")
@click.option("--hi", type=FINITE, default=None, help="Upper end (default 10, or 0.99 for price_drop).")
@click.option("--base", "base_ref", default="baseline", show_default=True, help="Base scenario (name or file).")
@format_option
def reverse(portfolio, parameters, registry_file, years, paths, seed, workers, shock, metric, threshold, lo, hi,
            base_ref, fmt):
    """Smallest shock at which a metric crosses a threshold (root search on common random numbers).

    The bank metric (collateral_coverage) needs a registry with loans (--registry demo: the shipped one).

    \b
    Example:
      carbon-risk stress reverse --shock price_drop --metric collateral_coverage --registry demo
    """
    from finance_engine.stress.reverse import ReverseStressError, reverse_stress_test
    from finance_engine.stress.run import StressSettings

    kind, _, peril = _check_shock(shock)
    if lo is not None and hi is not None and not lo < hi:
        raise CLIError(f"--lo {lo:g} must be below --hi {hi:g}")
    base = _scenarios([base_ref], False)[0]
    reg = _registry(registry_file)
    params = load_model(parameters)
    pf = load_portfolio_or_demo(portfolio, params)
    _bind(reg, pf, params, registry_file)
    _warn_timing([base], years, reg, pf, params)
    try:
        r = reverse_stress_test(pf, params, shock=(kind, peril or None), metric=metric, threshold=threshold, lo=lo,
                                hi=hi, base=base, registry=reg, settings=StressSettings(years=years, paths=paths, seed=seed),
                                workers=workers)
    except ReverseStressError as exc:
        raise CLIError(str(exc)) from exc
    if fmt == "json":
        echo_json(r.as_dict())
    else:
        click.echo(f"{metric} crosses {threshold:g} at {shock} = {_root_text(r)} "
                   f"(base value {r.metric_at_base:.4g}; {len(r.evaluations)} evaluations, seed {seed}, {paths} paths)")
        click.echo(f"± Monte Carlo standard error of the root: {r.error_method}" if r.multiplier_mc_se is not None
                   else f"the root has no Monte Carlo error: {r.error_method.removeprefix('no error: ')}")


def _root_text(r) -> str:
    """The root ``± s.e. (95% CI lo - hi)`` with the error's two significant digits setting the root's."""
    se = r.multiplier_mc_se
    if se is None:
        return f"{r.multiplier:.4g}"
    import math

    d = max(0, 1 - int(math.floor(math.log10(se)))) if se > 0 else 4
    lo, hi = r.multiplier_ci95
    return f"{r.multiplier:.{d}f} ± {se:.{d}f} (95% CI {lo:.{d}f} - {hi:.{d}f})"


def _check_shock(shock: str) -> tuple[str, str, str]:
    """``--shock`` as (kind, ':', peril), every name known before any simulation."""
    from finance_engine.stress.reverse import SHOCKS
    from models.perils import peril_classes

    kind, sep, peril = shock.partition(":")
    if kind not in SHOCKS:
        raise CLIError(f"--shock {shock!r}: the kind must be one of {', '.join(SHOCKS)}")
    if kind == "price_drop":
        if peril:
            raise CLIError(f"--shock {shock!r}: price_drop takes no peril")
        return kind, sep, peril
    known = list(peril_classes())
    if not peril:
        raise CLIError(f"--shock {shock!r}: name the peril, e.g. {kind}:ice_storm (perils: {', '.join(known)})")
    if peril not in known:
        raise CLIError(f"--shock {shock!r}: unknown peril {peril!r}; known: {', '.join(known)}")
    return kind, sep, peril


def validate_scenario_file(file: str, fmt: str) -> None:
    """``carbon-risk validate FILE --kind scenario``: exit 0 with a summary, or 2 naming the field."""
    from finance_engine.stress.scenarios import ScenarioError, load_scenario

    try:
        s = load_scenario(file)
    except ScenarioError as exc:
        lines = str(exc).splitlines()
        if fmt == "json":
            echo_json([{"file": file, "reason": ln.strip()} for ln in lines])
        else:
            for ln in lines:
                click.echo(ln, err=True)
        raise CLIError(f"{file}: the scenario file is not valid") from exc
    warnings = _scenario_area_warnings(s)
    if fmt == "json":
        echo_json({"file": file, "kind": "scenario", "valid": True, **s.describe(), "warnings": warnings})
    else:
        click.echo(f"{file}: OK, scenario {s.name} {s.version}, {len(s.forced_events)} forced event(s), "
                   f"sha256 {s.sha256[:12]}")
        for w in warnings:
            note(f"warning: {file}: {w}")


def _scenario_area_warnings(s) -> list[str]:
    """The names ``s``'s forced events give that are no county or township of the model's region (the parameter
    file of ``--parameters``, else the default region's: its pine wilt landscape's labels, read with the file in
    about 0.6 s; :func:`finance_engine.stress.areas.scenario_area_warnings`). A valid scenario may name a county a
    portfolio lacks (it then hits nothing there); a name that is in no portfolio of the region is most likely
    misspelt. A parameter file that cannot be read leaves the names unchecked (its own validation says why)."""
    if not any(ev.get("counties") or ev.get("townships") for _, _, ev in s.forced_events):
        return []
    from finance_engine.stress.areas import scenario_area_warnings
    from models.parameters import DEFAULT_REGION, ParameterError, load_parameters

    ctx = click.get_current_context(silent=True)
    ref = (ctx.params.get("parameters") if ctx is not None else None) or DEFAULT_REGION
    try:
        params = load_parameters(ref)
    except (ParameterError, OSError, ValueError):
        return []
    return scenario_area_warnings(s, params)


COMMANDS = [stress]
