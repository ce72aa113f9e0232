"""``carbon-risk quote`` (price a forest-carbon policy and its reinsurance on the engine) and
``carbon-risk price-layer`` (price an excess-of-loss layer on an insurer's own event loss table)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import click

from api.cli.common import (
    FINITE,
    LEVEL_CHOICES,
    CLIError,
    crediting_from_options,
    crediting_option_names,
    crediting_options,
    OutputFile,
    ProgressBar,
    echo_json,
    force_option,
    format_option,
    interval_columns,
    load_model,
    load_portfolio_or_demo,
    note,
    parameter_inputs,
    parameters_option,
    portfolio_input,
    portfolio_option,
    provenance_frame,
    show_model_notes,
)
from api.cli.tables import interval_text, probability_text, render_table, zero_one_bound

#: account levels of the AAL table
AAL_LEVELS = LEVEL_CHOICES
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "w": 1e4, "万": 1e4, "bn": 1e9}


def parse_amount(text: str, what: str) -> float:
    """``1500``, ``2.5e6``, ``300k``, ``12M``, ``inf`` -> float (CNY)."""
    t = str(text).strip().lower().replace(",", "").replace("_", "")
    if t in ("inf", "unlimited", "none"):
        return math.inf
    m = re.fullmatch(r"([0-9.]+(?:e[+-]?\d+)?)\s*(k|m|w|万|bn|)", t)
    if not m:
        raise CLIError(f"{what}: not an amount: {text!r} (e.g. 500000, 300k, 12M, inf)")
    try:
        return float(m.group(1)) * _SUFFIX[m.group(2)]
    except ValueError:
        raise CLIError(f"{what}: not an amount: {text!r}") from None


def parse_deductible(text: str | None, basis: str):
    """``500t`` (tCO2e), ``1%`` (of the insured stock), ``20000`` / ``20000cny`` / ``20k`` (CNY)."""
    from finance_engine.insurance.covers import Deductible

    if text is None:
        return Deductible(0.0, "cny", basis)
    t = text.strip().lower()
    try:
        if t.endswith("%"):
            return Deductible(float(t[:-1]) / 100.0, "stock_fraction", basis)
        if t.endswith("tco2e") or t.endswith("t"):
            return Deductible(float(t.removesuffix("tco2e").removesuffix("t")), "tco2e", basis)
        return Deductible(parse_amount(t.removesuffix("cny"), "--deductible"), "cny", basis)
    except ValueError as exc:
        raise CLIError(f"--deductible {text!r}: {exc} (use e.g. 500t, 1%, 20000)") from None


def parse_layer(text: str, basis: str, reinstatements, pct: float, share: float):
    from finance_engine.insurance import InsuranceInputError
    from finance_engine.insurance.quote import LayerSpec

    parts = text.split(":")
    if len(parts) != 2:
        raise CLIError(f"--layer {text!r}: use ATTACHMENT:LIMIT in CNY, e.g. 2M:8M")
    try:
        return LayerSpec(parse_amount(parts[0], "--layer attachment"), parse_amount(parts[1], "--layer limit"), basis,
                         reinstatements if basis == "occurrence" else None, pct, share)
    except InsuranceInputError as exc:
        raise CLIError(f"--layer {text!r}: {exc}") from None


@click.command("quote")
@portfolio_option
@parameters_option
@click.option("--cover", type=click.Choice(["stock-loss", "sink-index", "price-floor"]), default="stock-loss",
              show_default=True, help="Cover type.")
@click.option("--price", "price", type=FINITE, default=None,
              help="Agreed price, CNY/tCO2e (default: the price model's start price, 60).")
@click.option("--perils", default=None, help="Covered perils, comma-separated (stock-loss; default: all).")
@click.option("--deductible", default=None, help="Stock-loss deductible: 500t (tCO2e), 1% (of stock) or 20000 (CNY).")
@click.option("--deductible-basis", type=click.Choice(["annual", "event"]), default="annual", show_default=True)
@click.option("--limit", "limit", default=None,
              help="Annual limit in CNY (e.g. 5M, or unlimited; default: none, for sink-index the triggered sink value).")
@click.option("--participation", type=FINITE, default=1.0, show_default=True)
@click.option("--trigger", type=FINITE, default=None, help="Sink index trigger as a fraction of the expected sink (default 0.8).")
@click.option("--expected-sink", type=FINITE, default=None, help="Expected sink, tCO2e/yr (default: the model mean).")
@click.option("--index-error", type=click.Choice(["none", "normal", "lognormal"]), default="none", show_default=True,
              help="Measurement error of the sink index (remote-sensing inversion).")
@click.option("--error-cv", type=FINITE, default=None, help="CV of the index error (default 0.10 when an error is asked).")
@click.option("--strike", type=FINITE, default=None,
              help="Price floor strike, CNY/tCO2e (default: --price, else the --price-model series' price today).")
@click.option("--volume", type=FINITE, default=None, help="Price floor volume, tCO2e/yr (default: simulated credits issued).")
@click.option("--price-model", default="cea", show_default=True, help="Price model for the floor.")
@click.option("--loading", type=click.Choice(["none", "sd", "wang", "ph", "coc"]), default=None,
              help="Risk-load principle (default: coc, cost of capital on the 1-in-200 TVaR, for the policy and its "
                   "layers alike).")
@click.option("--lambda", "--loading-parameter", "loading_parameter", type=FINITE, default=None,
              help="Parameter of the principle: sd alpha, Wang lambda, PH rho or CoC rate.")
@click.option("--expense-ratio", type=FINITE, default=None, help="Expense ratio (default 0.20).")
@click.option("--profit-ratio", type=FINITE, default=None, help="Profit ratio (default 0.05).")
@click.option("--fixed-costs", type=FINITE, default=0.0, show_default=True, help="Fixed costs, CNY/yr.")
@click.option("--subsidy", default="none", show_default=True,
              help="Subsidy scheme (commercial_forest, public_welfare_forest, hebei_chestnut_2015) or none. Carbon "
                   "covers are not in the central forest-insurance subsidy (replanting-cost policy forest insurance).")
@click.option("--subsidised/--unsubsidised", "subsidised", default=None,
              help="Rate band to check: [0.75, 1.25] subsidised, [0.5, 1.5] other (default: subsidised when a "
                   "budget pays part of the premium).")
@click.option("--layer", "layer_specs", multiple=True, metavar="ATTACH:LIMIT",
              help="Reinsurance XoL layer in CNY (repeatable), e.g. --layer 2M:8M.")
@click.option("--layer-basis", type=click.Choice(["occurrence", "aggregate"]), default="occurrence", show_default=True)
@click.option("--reinstatements", type=click.IntRange(0, 20), default=None, help="Paid reinstatements of each occurrence layer.")
@click.option("--reinstatement-pct", type=FINITE, default=1.0, show_default=True)
@click.option("--layer-share", type=FINITE, default=1.0, show_default=True)
@click.option("--quota-share", type=FINITE, default=0.0, show_default=True, help="Quota-share cession (ceded first).")
@click.option("--level", "account_level", type=click.Choice(AAL_LEVELS), default="county", show_default=True,
              help="Account level for the AAL table.")
@click.option("--paths", type=click.IntRange(2, 1_000_000), default=2000, show_default=True)
@click.option("--years", type=click.IntRange(1, 100), default=None,
              help="Policy years per path [default: 1; a price floor on the simulated credits (no --volume): the run "
                   "year of the first verification, which issues the credits: the monitoring period, 5 years, or "
                   "sooner with --crediting-start-year].")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=2026, show_default=True)
@crediting_options("A price floor on the simulated credits: ")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the quote: .html (quote slip), .xlsx (money columns in CNY, with a provenance sheet) or .json.")
@force_option
@format_option
def quote(portfolio, parameters, cover, price, perils, deductible, deductible_basis, limit, participation, trigger,
          expected_sink, index_error, error_cv, strike, volume, price_model, loading, loading_parameter,
          expense_ratio, profit_ratio, fixed_costs, subsidy, subsidised, layer_specs, layer_basis,
          reinstatements, reinstatement_pct, layer_share, quota_share, account_level, paths, years, seed,
          crediting_start_year, crediting_period_years, workers, output, force, fmt):
    """Price a forest-carbon insurance policy (and reinsurance layers) on the simulated portfolio.

    \b
    Examples:
      carbon-risk quote                                   # stock-loss cover, all perils, 60 CNY/t
      carbon-risk quote --perils typhoon,ice_storm --deductible 0.1% --limit 20M --layer 2M:8M
      carbon-risk quote --cover sink-index --price 35 --trigger 0.8 --index-error normal --error-cv 0.1
      carbon-risk quote --cover price-floor --strike 55 --volume 100000 --loading wang --lambda 0.3
      carbon-risk quote --format json -o slip.html
    """
    from finance_engine.insurance import InsuranceInputError
    from finance_engine.insurance.covers import PriceFloorCover, SinkIndexCover, StockLossCover
    from finance_engine.insurance.quote import _quote_defaults, default_loading
    from finance_engine.insurance.quote import quote as run_quote
    from finance_engine.price import PriceModelError, load_price_model

    check_cover_options(click.get_current_context(), cover, index_error)
    try:
        pms = load_price_model()
        # a price floor's default strike is its own series' price today (a pilot ETS starts lower than the CEA)
        strike_default = pms.start_price(price_model) if price is None else price
        price = pms.start_price_cny_per_tco2e if price is None else price
        lim = None if limit is None else parse_amount(limit, "--limit")
        if cover == "stock-loss":
            c = StockLossCover(price, perils=perils, deductible=parse_deductible(deductible, deductible_basis),
                               limit_cny=math.inf if lim is None else lim, participation=participation)
        elif cover == "sink-index":
            qd = _quote_defaults()
            cv = error_cv if error_cv is not None else (qd["index_error_cv"] if index_error != "none" else 0.0)
            c = SinkIndexCover(price, qd["sink_trigger_fraction"] if trigger is None else trigger, lim, expected_sink,
                               index_error, cv, participation)
        else:
            c = PriceFloorCover(strike_default if strike is None else strike, volume, math.inf if lim is None else lim,
                                participation, price_model)
        ld = default_loading(loading, loading_parameter, expense_ratio=expense_ratio, profit_ratio=profit_ratio,
                             fixed_costs_cny=fixed_costs)
        layers = [parse_layer(s, layer_basis, reinstatements, reinstatement_pct, layer_share) for s in layer_specs]
    except (InsuranceInputError, PriceModelError) as exc:
        raise CLIError(str(exc)) from exc
    try:  # every name checked before the simulation
        pms.model(price_model)
    except PriceModelError as exc:
        raise CLIError(f"--price-model: {exc}") from None
    if subsidy.lower() != "none":
        from finance_engine.insurance.subsidy import subsidy_shares

        try:
            subsidy_shares(subsidy)
        except InsuranceInputError as exc:
            raise CLIError(f"--subsidy: {exc} (or none)") from None
    params = load_model(parameters)
    crediting = crediting_from_options(crediting_start_year, crediting_period_years)
    years = _policy_years(cover, volume, years, params, crediting)
    out = OutputFile(output, suffixes=(".html", ".htm", ".xlsx", ".json"), force=force,
                     inputs=[portfolio_input(portfolio), *parameter_inputs(params)]) if output else None
    pf = load_portfolio_or_demo(portfolio, params)
    note(f"quoting {cover} on {pf.n_parcels} parcels: {paths} paths x {years} year(s), seed {seed}")
    try:
        q = run_quote(c, pf, params, paths=paths, years=years, seed=seed, loading=ld,
                      subsidy=None if subsidy.lower() == "none" else subsidy, subsidised=subsidised,
                      layers=layers, quota_share=quota_share, account_level=account_level, price_model_set=pms,
                      workers=workers, progress=ProgressBar("quoting"), crediting=crediting or None)
    except (InsuranceInputError, PriceModelError) as exc:
        if str(exc).startswith("volume_tco2e:"):  # the simulated credits: name the options that set them
            raise CLIError(f"--volume: the simulated credits issued are 0 in the {years} policy year(s) of every "
                           f"path; give a fixed --volume (tCO2e a year) or more --years (credits are issued at the "
                           f"end of each {_monitoring_period(params)}-year monitoring period)") from exc
        raise CLIError(str(exc)) from exc
    except ValueError as exc:   # e.g. an unknown account level from the engine
        raise CLIError(str(exc)) from exc
    show_model_notes(q.provenance)
    if out is not None:
        _write(q, out)
        note(f"wrote {output}")
    if fmt == "json":
        echo_json(json.loads(q.to_json()))
        return
    _print_quote(q)


#: the options of ``quote`` that apply to one cover only (the others apply to every cover: --price is the
#: stock-loss and sink-index tonne's value and a price floor's default strike; --limit, --participation)
COVER_OPTIONS = {
    "stock-loss": ("perils", "deductible", "deductible_basis"),
    "sink-index": ("trigger", "expected_sink", "index_error", "error_cv"),
    "price-floor": ("strike", "volume", "price_model", "crediting_start_year", "crediting_period_years"),
}


def check_cover_options(ctx: click.Context, cover: str, index_error: str) -> None:
    """Refuse an option given on the command line that the chosen cover does not use (it would be ignored
    silently: ``--cover sink-index --deductible 5%``), naming the option and the cover, as the API refuses a
    cover's unknown fields."""
    from click.core import ParameterSource

    def given(name: str) -> bool:
        src = ctx.get_parameter_source(name)
        return src is not None and src not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)

    flag = {p.name: (p.opts[0] if p.opts else p.name) for p in ctx.command.params}
    for other, names in COVER_OPTIONS.items():
        if other == cover:
            continue
        bad = [flag[n] for n in names if given(n)]
        if bad:
            one = len(bad) == 1
            raise CLIError(f"{', '.join(bad)}: {'does' if one else 'do'} not apply to --cover {cover} "
                           f"({'it is a' if one else 'they are'} {other} term{'' if one else 's'}); leave "
                           f"{'it' if one else 'them'} out")
    crediting = [flag[n] for n in ("crediting_start_year", "crediting_period_years") if given(n)]
    if cover == "price-floor" and crediting and given("volume"):
        raise CLIError(f"{', '.join(crediting)}: a price floor on a fixed --volume pays on the price alone; the "
                       f"crediting rules apply to the simulated credits (leave out --volume, or the crediting "
                       f"options)")
    if cover == "sink-index" and given("error_cv") and index_error == "none":
        raise CLIError("--error-cv: the index has no measurement error (--index-error none); give --index-error "
                       "normal or lognormal with it, or leave it out")


def _monitoring_period(params) -> int:
    return int(params.file.crediting.monitoring_period_years.value)


def _policy_years(cover: str, volume, years: int | None, params, crediting: dict | None = None) -> int:
    """``--years``, or its default: 1, or for a price floor on the simulated credits (no ``--volume``) the run year
    of the first verification (the crediting's monitoring period, or sooner for projects that began crediting
    before the run: ``--crediting-start-year``), whose end issues the credits (a 1-year policy would see none). A
    price floor on the simulated credits for fewer years than that is refused before the simulation, naming the
    options; so is a crediting start or period the crediting rules cannot take."""
    from models.carbon import CreditingRules
    from models.dynamics import DEFAULT_START_YEAR

    try:
        rules = CreditingRules.from_parameters(params, start_year=DEFAULT_START_YEAR, **(crediting or {}))
    except ValueError as exc:
        raise CLIError(crediting_option_names(str(exc))) from None
    if cover != "price-floor" or volume is not None:
        return 1 if years is None else years
    first = rules.first_issuance_year() or rules.monitoring_period_years
    period = rules.monitoring_period_years
    if years is None:
        note(f"price floor on the simulated credits: --years defaults to {first}, the run year of the first "
             f"verification (credits are issued at the end of each {period}-year monitoring period); give --volume "
             f"for a fixed yearly volume")
        return first
    if years < first:
        raise CLIError(f"--years {years}: a price floor on the simulated credits sees none in {years} policy "
                       f"year(s) (the first verification, which issues them, ends run year {first}; then every "
                       f"{period} years); give --years {first} or more, or a fixed --volume (tCO2e a year)")
    return years


def _se_text(se) -> str:
    return "" if se is None else f" ± {se:,.0f} s.e."


def _pct(v, digits: int = 2) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def _pm(v, se, fmt: str = ",.0f", unit: str = "") -> str:
    """``value ± se`` (the Monte Carlo standard error; the value alone where there is none)."""
    if v is None:
        return "-"
    if se is None or not math.isfinite(se):
        return f"{v:{fmt}}{unit}"
    return f"{v:{fmt}} ± {se:{fmt}}{unit}"


def _pct_pm(v, se, digits: int = 2) -> str:
    if v is None:
        return "-"
    if se is None or not math.isfinite(se):
        return f"{100 * v:.{digits}f}%"
    return f"{100 * v:.{digits}f}% ± {100 * se:.{digits}f}%"


def _print_quote(q) -> None:
    p, e = q.premium, q.exposure
    click.echo(f"Cover {q.cover['kind']}: area {e['area_ha']:,.1f} ha ({e['area_mu']:,.0f} mu), insured "
               f"{_pm(e['insured_tco2e'], e.get('insured_tco2e_mc_se'))} tCO2e, sum insured "
               f"{_pm(e['sum_insured_cny'], e.get('sum_insured_mc_se_cny'))} CNY"
               + ("; estimated from the run" if e.get("estimated_from_run") else ""))
    from finance_engine.reports.quote_slip import cover_items

    for k, v in cover_items(q.to_dict()):  # the terms the run sets (a sink index's limit and expected sink)
        if k in ("limit_cny", "expected_sink_tco2e", "volume_tco2e") and q.cover.get(k) is None:
            click.echo(f"  {k}: {v}")
    from finance_engine.reports.html import fmt_parameter_sd

    psd = p.get("parameter_sd_cny")  # None: drawn without parameter uncertainty; a clipped 0 is "not resolved"
    # with its 95 % interval in brackets (a quote stored before it was reported has none)
    psd_ci = (p.get("parameter_sd_ci95_low_cny"), p.get("parameter_sd_ci95_high_cny"))
    psd_text = (f", parameter sd {fmt_parameter_sd(psd, p['pure_premium_mc_se_cny'], ci=psd_ci)}"
                if psd is not None else "")
    click.echo(f"Pure premium {p['pure_premium_cny']:,.0f} CNY (MC s.e. {p['pure_premium_mc_se_cny']:,.0f}{psd_text}); "
               f"risk load ({q.loading['method']}) {_pm(p['risk_load_cny'], p.get('risk_load_mc_se_cny'))}; "
               f"expenses {p['expenses_cny']:,.0f}; profit {p['profit_cny']:,.0f}")
    click.echo(f"Gross premium {_pm(p['gross_premium_cny'], p.get('gross_premium_mc_se_cny'))} CNY = "
               f"{_pct_pm(p['rate_on_sum_insured'], p.get('rate_on_sum_insured_mc_se'))} of sum insured "
               f"(pure rate {_pct_pm(p['pure_rate'], p.get('pure_rate_mc_se'))}); "
               f"{_pm(p['premium_per_mu_cny'], p.get('premium_per_mu_mc_se_cny'), ',.2f')} CNY/mu, "
               f"{_pm(p['premium_per_ha_cny'], p.get('premium_per_ha_mc_se_cny'), ',.2f')} CNY/ha, "
               + (f"{_pm(p['premium_per_tco2e_cny'], p.get('premium_per_tco2e_mc_se_cny'), ',.2f')} CNY/tCO2e; "
                  if p['premium_per_tco2e_cny'] is not None else "")
               + f"expected loss ratio {_pct_pm(p['expected_loss_ratio'], p.get('expected_loss_ratio_mc_se'), 0)}")
    click.echo("(± Monte Carlo standard error)")
    units = _quote_units(q)
    r = q.risk
    pp = r.get("prob_payout")
    if pp is not None:
        click.echo(f"P(payout in a policy year) "
                   f"{probability_text(pp, r.get('prob_payout_mc_se'), zero_one_bound(pp, units))}")
    if r.get("no_payout_note"):
        click.echo("NO EXPECTED LOSS: " + r["no_payout_note"])
    rb = q.rate_band
    if rb.get("factor") is not None:
        click.echo(f"Rate-adjustment factor {rb['factor']:.2f} (band {rb['band'][0]}-{rb['band'][1]}): "
                   + ("within" if rb["within_band"] else f"OUTSIDE; the band allows at most {rb['rate_at_band_top']:.2%}"))
    s = q.subsidy
    sub_se = s.get("amounts_mc_se_cny") or {}
    click.echo("Subsidy (" + str(s["scheme"]) + "): " + ", ".join(
        f"{k} {_pm(v, sub_se.get(k) if v else None)}" for k, v in s["amounts_cny"].items()))
    if s.get("note"):
        click.echo(f"  note: {s['note']}")
    if p.get("capital_measure"):
        lp = p.get("loading_parameters") or {}
        cap_se = lp.get("capital_mc_se_cny")
        click.echo(f"Cost of capital on {p['capital_measure']}: capital {lp.get('capital', 0):,.0f} CNY"
                   + (f" (MC s.e. {cap_se:,.0f})" if cap_se is not None else ""))
    click.echo("\nPML (CNY) with 95% CI (open: too few simulated years to bound that end):")
    click.echo(render_table(q.frame("risk.pml")[["basis", "return_period_years", "loss", "ci_low", "ci_high"]],
                            missing="open"))
    click.echo("\nVaR / TVaR of the annual payout (CNY):")
    import pandas as pd

    vt = q.frame("risk.var_tvar")
    # an open interval end reads "open"; a TVaR error the tail is too thin to give, "too few years"
    vt["tvar_se"] = [("too few years" if pd.isna(v) else f"{v:,.0f}") for v in vt["tvar_se"]]
    click.echo(render_table(vt, missing="open"))
    if q.aal_by_peril:
        click.echo("\nAAL by peril (ground-up, destroyed stock at the agreed price):")
        click.echo(render_table(q.frame("aal_by_peril")))
    if q.aal_by_level:
        click.echo("\nAAL by account:")
        click.echo(render_table(q.frame("aal_by_level")[["group", "aal_tco2e", "aal_cny", "aal_se_cny"]]))
    if q.layers:
        click.echo("\nReinsurance layers (± Monte Carlo standard error):")
        click.echo(render_table(_layers_table(q.frame("layers"), units)))
        c = q.capital
        click.echo(f"1-in-200 capital gross {c['gross_capital_cny']:,.0f} "
                   f"({interval_text(c['gross_capital_ci95_cny'])}) -> net {c['net_capital_cny']:,.0f} "
                   f"({interval_text(c['net_capital_ci95_cny'])}) CNY "
                   f"(relief {c['capital_relief_cny']:,.0f}{_se_text(c.get('capital_relief_mc_se_cny'))}; cost of "
                   f"reinsurance {c['cost_of_reinsurance_cny']:,.0f}{_se_text(c.get('cost_of_reinsurance_mc_se_cny'))})")
    if q.basis_risk:
        b = q.basis_risk
        corr = "-" if b["correlation"] is None else f"{b['correlation']:.3f}"
        click.echo(f"\nBasis risk (index error; payout vs the perfect-index payout): corr {corr}; P(perfect index "
                   f"pays, index does not) {b['prob_loss_no_payout']:.1%}; P(index pays, perfect index does not) "
                   f"{b['prob_payout_no_loss']:.1%}; RMSE {b['rmse_cny']:,.0f} CNY{_se_text(b.get('rmse_mc_se_cny'))}")
        g = b.get("protection_gap")
        if g:
            share = "-" if g["gap_share_of_true_loss"] is None else f"{g['gap_share_of_true_loss']:.0%}"
            click.echo(f"Protection gap (by design: trigger, limit, participation): mean {g['mean_gap_cny']:,.0f} CNY"
                       f"{_se_text(g.get('mean_gap_mc_se_cny'))} = {share} of the true loss "
                       f"{g['mean_true_loss_cny']:,.0f}; P(loss, no payout by design) "
                       f"{g['prob_loss_no_payout_by_design']:.1%}")
    pv = q.provenance
    click.echo(f"\nmodel {pv['model_version']} ({pv['code_version']}), parameters sha256 {pv['parameter_sha256'][:12]}, "
               f"seed {pv['seed']}, {pv['paths']} paths x {pv['years']} year(s)")


def _quote_units(q) -> int:
    """The independent units a quote's probabilities count (its parameter sets: the CLI runs the engine's default
    switches, whose paths share a parameter draw in sets; finance_engine.insurance.quote's ``_Design``), for the
    rule-of-three interval of a probability estimated at exactly 0 or 1."""
    from models.dynamics import SimulationSwitches

    return max(int(q.provenance["paths"]) // SimulationSwitches().correlated_set_size, 1)


def _layers_table(lay, units: int = 1):
    """The layers as text cells ``value ± s.e.``: expected layer loss, reinsurance premium, rate on line,
    multiple, probabilities of attachment and exhaustion (at exactly 0 or 1 with the rule-of-three 95 % interval
    over ``units`` independent units instead of a zero error)."""
    import pandas as pd

    def col(v, e, f):
        return [f(a, None if b is None or (isinstance(b, float) and math.isnan(b)) else b)
                for a, b in zip(lay[v], lay[e] if e in lay else [None] * len(lay))]

    def prob(a, b):
        return probability_text(a, b, zero_one_bound(a, units))

    return pd.DataFrame({
        "layer": lay["layer"],
        "expected_loss_cny": col("expected_layer_loss_cny", "expected_layer_loss_se_cny", _pm),
        "reinsurance_premium_cny": col("reinsurance_premium_cny", "reinsurance_premium_mc_se_cny", _pm),
        "rate_on_line": col("rate_on_line", "rate_on_line_mc_se", _pct_pm),
        "multiple": col("multiple", "multiple_mc_se", lambda a, b: _pm(a, b, ",.2f")),
        "prob_attachment": col("prob_attachment", "prob_attachment_mc_se", prob),
        "prob_exhaustion": col("prob_exhaustion", "prob_exhaustion_mc_se", prob),
    })


#: the quote workbook's column names with their units (the JSON keeps the library's names)
PML_UNITS = {"loss": "loss_cny", "ci_low": "ci_low_cny", "ci_high": "ci_high_cny"}
VAR_UNITS = {"level": "confidence_level", "var": "var_cny", "var_ci_low": "var_ci_low_cny",
             "var_ci_high": "var_ci_high_cny", "tvar": "tvar_cny", "tvar_se": "tvar_se_cny"}


def _cells(d: dict) -> dict:
    """One spreadsheet cell per value: ``x: [lo, hi]`` -> ``x_low``, ``x_high``; other lists and dicts as text."""
    out = {}
    for k, v in d.items():
        if isinstance(v, (list, tuple)) and len(v) == 2 and all(x is None or isinstance(x, (int, float)) for x in v):
            lo, hi = interval_columns(k)
            out[lo], out[hi] = v
        elif isinstance(v, (list, tuple, dict)):
            out[k] = json.dumps(v, ensure_ascii=False, default=str)
        else:
            out[k] = v
    return out


def _write(q, out: OutputFile) -> None:
    if out.suffix == ".json":
        out.write_text(q.to_json(indent=2))
    elif out.suffix == ".xlsx":
        import pandas as pd

        prov = out.provenance(q.provenance)
        s = q.subsidy

        def workbook(p):
            with pd.ExcelWriter(p, engine="openpyxl") as xw:
                pd.DataFrame([_cells(q.premium)]).to_excel(xw, sheet_name="premium", index=False)
                pd.DataFrame([q.exposure]).to_excel(xw, sheet_name="exposure", index=False)
                pd.DataFrame([{"payer": k, "share": s["shares"].get(k), "amount_cny": v}
                              for k, v in s["amounts_cny"].items()]).assign(scheme=s["scheme"]).to_excel(
                    xw, sheet_name="subsidy", index=False)
                q.frame("risk.pml").rename(columns=PML_UNITS).to_excel(xw, sheet_name="pml", index=False)
                q.frame("risk.ep_curve").to_excel(xw, sheet_name="ep_curve", index=False)
                q.frame("risk.var_tvar").rename(columns=VAR_UNITS).to_excel(xw, sheet_name="var_tvar", index=False)
                for part in ("aal_by_peril", "aal_by_level", "layers"):
                    if getattr(q, part):
                        q.frame(part).to_excel(xw, sheet_name=part, index=False)
                if q.capital:
                    pd.DataFrame([_cells(q.capital)]).to_excel(xw, sheet_name="capital", index=False)
                provenance_frame(prov).to_excel(xw, sheet_name="provenance", index=False)

        out.write(workbook)
    else:
        from finance_engine.reports.quote_slip import render_quote_slip

        out.write_text(render_quote_slip(q))


# =====================================================================================================
def _read_elt(path: str):
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise CLIError(f"{path}: no such file")
    if p.is_dir():
        raise CLIError(f"{path}: is a directory, not an event loss table")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(p)
        elif suffix == ".parquet":
            df = pd.read_parquet(p)
        elif suffix == ".xlsx":
            df = pd.read_excel(p)
        else:
            raise CLIError(f"{path}: unsupported file type {suffix!r}; use .csv, .parquet or .xlsx")
    except CLIError:
        raise
    except pd.errors.EmptyDataError:
        raise CLIError(f"{path}: the file is empty (an ELT needs the header year,event_id,loss)") from None
    except Exception as exc:  # noqa: BLE001 - unreadable file -> one clear line
        raise CLIError(f"{path}: cannot read the file ({type(exc).__name__}: {exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


#: the engine's per-value rules on an event loss table's column (finance_engine.insurance.tables): a message's
#: start -> which of the column's values break it (``s`` the column as read, ``num`` its values as numbers)
_ELT_RULES = (
    # (a column of booleans is read as no numbers at all: every value breaks it)
    (re.compile(r"column '(?P<col>.+?)' must be numeric"), lambda s, num, n: s.notna() & num.isna()),
    (re.compile(r"column '(?P<col>.+?)' has \d+ missing \(NaN\) value"), lambda s, num, n: s.isna()),
    (re.compile(r"column '(?P<col>.+?)' has missing event ids"), lambda s, num, n: s.isna()),
    (re.compile(r"column '(?P<col>.+?)' must hold integer year indices"),
     lambda s, num, n: num.notna() & (num != num.round())),
    (re.compile(r"column '(?P<col>.+?)' must lie in \[0, n_years"), lambda s, num, n: (num < 0) | (num >= n)),
    (re.compile(r"column '(?P<col>.+?)' must be >= 0"), lambda s, num, n: num < 0),
    (re.compile(r"column '(?P<col>.+?)' must be finite"), lambda s, num, n: num.isin([math.inf, -math.inf])),
)


def _file_rows(path: str, n: int) -> list[int]:
    """The file's data-row number (1 = the first row under the header, blank lines counted, as a portfolio's
    problems count them) of each of the ``n`` rows read: a CSV's blank lines are skipped by the reader; other
    files' rows are taken as read."""
    rows = list(range(1, n + 1))
    if Path(path).suffix.lower() != ".csv":
        return rows
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return rows
    start = next((i for i, ln in enumerate(lines) if ln.strip()), 0)  # the header
    data = [i - start for i, ln in enumerate(lines) if i > start and ln.strip()]
    return data[:n] if len(data) >= n else rows


def _elt_error(path: str, df, message: str, n_years: int) -> str:
    """The engine's refusal of an event loss table as one line naming the first bad row (1 = the first data row
    under the header), the column and its value, where the rule is one on single values; else the file and the
    engine's message."""
    import numpy as np
    import pandas as pd

    for rule, bad_of in _ELT_RULES:
        m = rule.match(message)
        if m is None or m.group("col") not in df.columns:
            continue
        s = df[m.group("col")]
        if isinstance(s, pd.DataFrame):  # a column name given twice
            break
        num = pd.to_numeric(s, errors="coerce") if not pd.api.types.is_bool_dtype(s) else \
            pd.Series(np.nan, index=s.index)
        bad = np.flatnonzero(np.asarray(bad_of(s, num, n_years), dtype=bool))
        if not bad.size:
            break
        i = int(bad[0])
        row = _file_rows(path, len(df))[i]
        v = s.iloc[i]
        v = v.item() if hasattr(v, "item") else v
        value = "empty" if v is None or (isinstance(v, float) and v != v) else repr(v)
        counted = re.search(r"\d+ (negative value|missing|row)", message) is not None  # the engine's own count
        more = f" ({bad.size:,} rows break it; this is the first)" if bad.size > 1 and not counted else ""
        return (f"{path}, data row {row} (row {row + 1} counting the header), column {m.group('col')!r} "
                f"(value {value}): {message}{more}")
    return f"{path}: {message}"


@click.command("price-layer")
@click.argument("elt_file", metavar="ELT", type=click.Path(dir_okay=True))
@click.option("--years", "n_years", type=click.IntRange(1, None), required=True,
              help="Number N of simulated years the table covers; its year column holds 0-based year indices "
                   "0 to N-1, i.e. in [0, N) (years without a row had no loss).")
@click.option("--attachment", required=True, help="Attachment (loss unit of the table), e.g. 2M.")
@click.option("--limit", "limit", required=True, help="Limit (or inf).")
@click.option("--basis", type=click.Choice(["occurrence", "aggregate"]), default="occurrence", show_default=True)
@click.option("--reinstatements", type=click.IntRange(0, 20), default=None, help="Paid reinstatements (occurrence).")
@click.option("--reinstatement-pct", type=FINITE, default=1.0, show_default=True)
@click.option("--share", type=FINITE, default=1.0, show_default=True, help="Participation in the layer.")
@click.option("--loading", type=click.Choice(["none", "sd", "wang", "ph", "coc"]), default=None,
              help="Risk-load principle for the technical premium (default: coc).")
@click.option("--lambda", "--loading-parameter", "loading_parameter", type=FINITE, default=None)
@click.option("--year-col", default=None,
              help="Column of the simulated-year index [default: year; for the engine's own table (columns path "
                   "and sim_year, from `simulate --loss-table`) sim_year].")
@click.option("--event-col", default="event_id", show_default=True)
@click.option("--loss-col", default=None,
              help="Column of the loss [default: loss; for the engine's own table without a loss column, "
                   "loss_tco2e].")
@format_option
def price_layer_cmd(elt_file, n_years, attachment, limit, basis, reinstatements, reinstatement_pct, share, loading,
                    loading_parameter, year_col, event_col, loss_col, fmt):
    """Price an excess-of-loss layer on your own event loss table (columns year, event_id, loss).

    The engine's own table (`carbon-risk simulate --loss-table portfolio -o DIR` writes
    DIR/event_loss_table.csv, columns path, year, sim_year, event_id, loss_tco2e) is read as it is: its
    simulated year is sim_year (= path x years + year), and --years is paths x years. A year column that
    cannot index --years simulated years (a year within each path, or event years all far below --years)
    is refused.

    \b
    Examples:
      carbon-risk price-layer elt.csv --years 10000 --attachment 2M --limit 8M
      carbon-risk price-layer elt.parquet --years 5000 --attachment 0 --limit 5M --basis aggregate --format json
      carbon-risk price-layer out/event_loss_table.csv --years 60000 --attachment 1e5 --limit 4e5
          (the engine's table of 2,000 paths x 30 years: sim_year and loss_tco2e are its defaults)
    """
    from finance_engine.insurance import InsuranceInputError, YearIndexError, elt_columns, layer_quote, price_layer
    from finance_engine.insurance.quote import default_loading, layer_premium

    df = _read_elt(elt_file)
    a = parse_amount(attachment, "--attachment")
    lim = parse_amount(limit, "--limit")
    rein = (reinstatements, reinstatement_pct) if reinstatements is not None else None
    year_used, loss_used, engine = elt_columns(df, year_col, loss_col)
    if engine and (year_col is None or loss_col is None):
        note(f"{elt_file}: the engine's event loss table (columns path and sim_year): simulated year "
             f"{year_used!r}, loss {loss_used!r}")
    try:
        lay = price_layer(df, n_years, a, lim, basis, rein, share=share, year_col=year_used, event_col=event_col,
                          loss_col=loss_used, check_year_spread=True)
        ld = default_loading(loading, loading_parameter, expense_ratio=0.0, profit_ratio=0.0)
        prem = layer_premium(lay.annual_loss, ld)  # cost of capital on the layer's own TVaR, as quote's layers
        lq = layer_quote(lay, prem.premium)
    except YearIndexError as exc:
        text = str(exc).replace("n_years=", "--years ")
        if exc.suggestion:
            hint = f" (--year-col {exc.suggestion})"
        elif text.startswith("--years"):
            hint = ""
        else:
            hint = " (--year-col names the simulated-year column; --years the simulated years it covers)"
        raise CLIError(f"{elt_file}: {text}{hint}") from exc
    except InsuranceInputError as exc:
        raise CLIError(_elt_error(elt_file, df, str(exc), n_years)) from exc
    lo, hi = lay.expected_loss_ci()
    p_att_se, p_exh_se = lay.mean_se(lay.annual_loss > 0), lay.mean_se(lay.annual_exhausted)
    # a probability estimated at exactly 0 or 1: its rule-of-three 95 % interval over the independent units
    zero_one = {k: zero_one_bound(v, lay.independent_units)
                for k, v in (("prob_attachment", lay.prob_attachment), ("prob_exhaustion", lay.prob_exhaustion))}
    out = {
        "layer": {"attachment": a, "limit": lim, "basis": basis, "share": share,
                  "reinstatements": None if rein is None else {"count": rein[0], "premium_pct": rein[1]},
                  "aggregate_limit": lay.aggregate_limit},
        "columns": {"year": year_used, "event": event_col, "loss": loss_used, "engine_table": engine},
        "n_years": lay.n_years, "years_per_block": lay.years_per_block, "events": int(len(df)),
        "pure_premium": lay.expected_loss, "pure_premium_se": lay.expected_loss_se, "pure_premium_ci95": [lo, hi],
        "sd_annual_loss": lay.sd_annual_loss, "prob_attachment": lay.prob_attachment,
        "prob_attachment_se": p_att_se, "prob_exhaustion": lay.prob_exhaustion, "prob_exhaustion_se": p_exh_se,
        "expected_events_in_layer": lay.expected_events_in_layer,
        "upfront_pure_premium": lay.upfront_premium,
        "expected_reinstatement_premium": lay.expected_reinstatement_premium,
        "technical_premium": prem.premium, "loading": ld.to_dict(), "loading_parameters": dict(prem.parameters),
        "upfront_premium": lq.upfront_premium, "rate_on_line": lq.rate_on_line,
        "multiple": lq.multiple, "pure_rate_on_line": lay.pure_rate_on_line,
    }
    if fmt == "json":
        echo_json(out)
        return
    click.echo(f"Layer {lim:,.0f} xs {a:,.0f} ({basis}) on {elt_file}: {lay.n_years:,} years, {len(df):,} rows")
    click.echo(f"Pure premium {lay.expected_loss:,.2f} (s.e. {lay.expected_loss_se:,.2f}; 95% CI {lo:,.2f} - {hi:,.2f}); "
               f"sd {lay.sd_annual_loss:,.2f}")
    click.echo(f"P(attachment) {probability_text(lay.prob_attachment, p_att_se, zero_one['prob_attachment'])}; "
               f"P(exhaustion) {probability_text(lay.prob_exhaustion, p_exh_se, zero_one['prob_exhaustion'])}; "
               f"events in layer per year {lay.expected_events_in_layer:.4f}")
    if lay.independent_units < lay.n_years:
        click.echo(f"± and s.e.: from {lay.independent_units:,} independent blocks of {lay.years_per_block:,} "
                   "simulated years (a path's years, and the paths sharing a parameter draw, are correlated)")
    elif engine:
        click.echo("± and s.e.: the table's simulated years taken as independent (fewer than two independent "
                   "blocks of paths to count: the errors are lower bounds)")
    else:
        click.echo("± and s.e.: the table's simulated years taken as independent")
    if rein is not None:
        click.echo(f"Upfront pure premium {lay.upfront_premium:,.2f} + expected reinstatement premium "
                   f"{lay.expected_reinstatement_premium:,.2f}")
    click.echo(f"Technical premium ({ld.method} {ld.parameter}) {prem.premium:,.2f}: rate on line "
               f"{lq.rate_on_line:.2%}, multiple {lq.multiple:.2f}")


COMMANDS = [quote, price_layer_cmd]
