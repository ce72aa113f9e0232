"""``carbon-risk collateral``: value the pledged carbon of a loan and its risk over the term."""

from __future__ import annotations

from pathlib import Path

import click

from api.cli.common import (
    CLIError,
    echo_json,
    json_text,
    format_option,
    load_model,
    load_portfolio_or_demo,
    note,
    parameters_option,
    portfolio_option,
    show_model_notes,
)
from api.cli.tables import interval_text, render_table
from models._yaml import DataFileError, read_data_file


def _load_terms_file(path: str) -> dict:
    try:
        data, _ = read_data_file(path, "terms file")
    except DataFileError as exc:
        raise CLIError(str(exc)) from exc
    if not isinstance(data, dict):
        raise CLIError(f"{path}: the terms file must be a mapping of field -> value")
    return data


@click.command("collateral")
@portfolio_option
@parameters_option
@click.option("--terms", "terms_file", type=click.Path(dir_okay=False), default=None,
              help="Loan terms as YAML/JSON (fields of LoanTerms); options below override it.")
@click.option("--amount", "amount_cny", type=float, default=None, help="Loan amount, CNY.")
@click.option("--term", "term_years", type=int, default=None, help="Term in years.")
@click.option("--rate", "interest_rate", type=float, default=None, help="Interest rate per year (0.0435 = 4.35 %).")
@click.option("--amortisation", type=click.Choice(["bullet", "annuity", "linear"]), default=None)
@click.option("--pledge-rate", type=float, default=None, help="Maximum LTV at origination (质押率).")
@click.option("--ltv-trigger", type=float, default=None, help="LTV above which a top-up is called.")
@click.option("--pd", "borrower_pd", type=float, default=None, help="Borrower PD (enables LGD, EL, IRB capital).")
@click.option("--mortgage", "forest_right_mortgage_cny", type=float, default=None, help="Forest-right mortgage value, CNY.")
@click.option("--guarantee", "guarantee_cny", type=float, default=None, help="Guarantee, CNY.")
@click.option("--credit-type", type=click.Choice(["ccer", "carbon_puhui", "tanpiao"]), default=None)
@click.option("--price-scenario", type=click.Choice(["current_policies", "delayed_transition", "net_zero", "price_crash"]),
              default=None, help="Let prices fluctuate around an NGFS-style scenario path.")
@click.option("--price-loss-correlation", type=click.FloatRange(-1, 1), default=None,
              help="Correlate price shocks with the pledged forest's annual losses (stress).")
@click.option("--insured-price", type=float, default=None,
              help="Assign a sink-loss policy to the bank paying this CNY/tCO2e for destroyed stock.")
@click.option("--parcels", "parcel_ids", default=None, help="Comma-separated pledged parcel ids.")
@click.option("--project", "project_id", default=None, help="Pledge every parcel of this project_id.")
@click.option("--paths", type=click.IntRange(32, 1_000_000), default=10_000, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=2026, show_default=True)
@click.option("--no-attribution", is_flag=True, help="Skip the value-driver runs (faster).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write a report: .html (collateral memo), .xlsx or .json.")
@format_option
def collateral(portfolio, parameters, terms_file, parcel_ids, project_id, paths, seed, no_attribution, workers,
               output, fmt, insured_price, **overrides):
    """Value the pledged carbon: worth today, how it can fall, and how much is safe to lend.

    \b
    Examples:
      carbon-risk collateral --amount 3000000 --term 3 --rate 0.0435 --project LS-LQ-P03
      carbon-risk collateral --terms loan.yaml --pd 0.02 --mortgage 1500000 --format json
      carbon-risk collateral --amount 200000 --term 2 --rate 0.04 --parcels LS-000001,LS-000002 -o memo.html
    """
    from finance_engine.collateral import LoanTermsError, value_collateral

    terms = _load_terms_file(terms_file) if terms_file else {}
    terms.update({k: v for k, v in overrides.items() if v is not None})
    if insured_price is not None:
        terms["insurance"] = {"agreed_price_cny_per_tco2e": insured_price}
    for req, flag in (("amount_cny", "--amount"), ("term_years", "--term"), ("interest_rate", "--rate")):
        if req not in terms:
            raise CLIError(f"missing loan term {req} (give {flag} or a --terms file)")
    params = load_model(parameters)
    pf = load_portfolio_or_demo(portfolio, params)
    ids = [x.strip() for x in parcel_ids.split(",") if x.strip()] if parcel_ids else None
    try:
        v = value_collateral(pf, params, terms, parcel_ids=ids, project_id=project_id, paths=paths, seed=seed,
                             attribution=not no_attribution, workers=workers)
    except LoanTermsError as exc:
        raise CLIError(str(exc)) from exc
    show_model_notes(v.provenance)
    if output:
        _write(v, output)
        note(f"wrote {output}")
    if fmt == "json":
        echo_json(v.to_dict())
        return
    vt = v.value_today
    click.echo(f"Pledged: {vt['pledged_parcels']} parcels, {vt['pledged_area_ha']:,.1f} ha, "
               f"stock {vt['stock_today_tco2e']:,.0f} tCO2e")
    click.echo(f"Value today: {vt['value_cny']:,.0f} CNY  (MC s.e. {vt['mc_se_cny']:,.0f}; "
               f"parameter sd {vt['parameter_sd_cny']:,.0f}; 95% CI {vt['ci95_cny'][0]:,.0f} - {vt['ci95_cny'][1]:,.0f})")
    c = vt["credits_over_horizon_tco2e"]
    click.echo(f"Credits over {v.provenance['horizon_years']} years: mean {c['mean']:,.0f} ± {c['mc_se']:,.0f}; "
               + " / ".join(f"P{k} {c[f'p{k}']:,.0f} ({interval_text(c[f'p{k}_ci95'])})" for k in (10, 50, 90))
               + f" tCO2e; price today {vt['price_today_cny_per_tco2e']:.1f} CNY/t; "
               f"practice appraisal (expected sink x price) {vt['appraisal_practice_cny']:,.0f} CNY")
    click.echo("\nOver the term:")
    click.echo(render_table(v.by_year[["year", "balance_cny", "value_p05_cny", "value_p50_cny", "value_p95_cny",
                                       "ltv_p95", "p_value_below_balance", "p_top_up_call"]]))
    r, s = v.risk, v.sizing
    click.echo(f"\nP(value below balance at any time) {r['p_value_below_balance_any_time']:.2%} "
               f"± {r['p_value_below_balance_any_time_mc_se']:.2%}; P(any top-up call) {r['p_any_top_up_call']:.2%} "
               f"± {r['p_any_top_up_call_mc_se']:.2%}; collateral VaR95 {r['collateral_var95_cny']:,.0f} "
               f"({interval_text(r['collateral_var95_ci95_cny'])}), ES99 {r['collateral_es99_cny']:,.0f} "
               f"± {r['collateral_es99_mc_se_cny']:,.0f} CNY")
    click.echo(f"Largest loan for P(shortfall) <= {s['target_shortfall_probability']:.0%}: {s['max_loan_cny']:,.0f} CNY "
               f"({interval_text(s['max_loan_ci95_cny'])}; haircut {s['implied_haircut']:.0%}); requested loan "
               f"{'within' if s['requested_loan_within_limit'] else 'ABOVE'} that limit")
    sec = v.security
    click.echo(f"Carbon covers {sec['carbon_cover_of_exposure']:.0%} of the exposure, {sec['carbon_share_of_security']:.0%} "
               "of the security" + (" -> credit enhancement only" if sec["credit_enhancement_only"] else ""))
    if v.credit:
        cr = v.credit
        click.echo(f"F-IRB LGD {cr['firb_lgd_carbon_as_other_physical']:.1%} (unsecured {cr['firb_lgd_unsecured']:.0%}), "
                   f"EL {cr['expected_loss_cny']:,.0f} CNY, K {cr['irb_capital_k']:.2%}, RWA {cr['rwa_cny']:,.0f} CNY")
    if v.drivers is not None:
        click.echo("\nWhat drives value down (each switched off in turn, common random numbers):")
        click.echo(render_table(v.drivers[["driver", "value_cny", "value_effect_cny", "value_effect_mc_se_cny",
                                           "p_value_below_balance_any_time", "shortfall_effect_mc_se"]]))
    p = v.provenance
    click.echo(f"\nmodel {p['model_version']} ({p['code_version']}), parameters sha256 {p['parameter_sha256'][:12]}, "
               f"seed {p['seed']}, {p['paths']} paths")


def _write(v, output: str) -> None:
    suffix = Path(output).suffix.lower()
    if suffix == ".json":
        Path(output).write_text(json_text(v), encoding="utf-8")
    elif suffix == ".xlsx":
        import pandas as pd

        with pd.ExcelWriter(output) as xw:
            pd.DataFrame([v.value_today]).astype(str).to_excel(xw, sheet_name="value_today", index=False)
            v.by_year.to_excel(xw, sheet_name="by_year", index=False)
            pd.DataFrame([_flat(v.risk)]).to_excel(xw, sheet_name="risk", index=False)
            pd.DataFrame([_flat(v.sizing)]).to_excel(xw, sheet_name="sizing", index=False)
            pd.DataFrame([v.security]).to_excel(xw, sheet_name="security", index=False)
            if v.credit:
                pd.DataFrame([v.credit]).to_excel(xw, sheet_name="credit", index=False)
            if v.drivers is not None:
                v.drivers.to_excel(xw, sheet_name="drivers", index=False)
            if v.sensitivities is not None:
                v.sensitivities.to_excel(xw, sheet_name="sensitivities", index=False)
            pd.DataFrame([{k: str(x) for k, x in v.provenance.items()}]).to_excel(xw, sheet_name="provenance", index=False)
    elif suffix in (".html", ".htm"):
        from finance_engine.reports.collateral_memo import render_collateral_memo

        Path(output).write_text(render_collateral_memo(v), encoding="utf-8")
    else:
        raise CLIError(f"--output {output}: unsupported file type {suffix!r}; use .html, .xlsx or .json")



def _flat(d: dict) -> dict:
    """One spreadsheet cell per number: ``{"x": [lo, hi]}`` -> ``x_low``, ``x_high``; nested dicts -> ``x_key``."""
    out = {}
    for k, val in d.items():
        if isinstance(val, dict):
            out.update(_flat({f"{k}_{kk}": vv for kk, vv in val.items()}))
        elif isinstance(val, (list, tuple)) and len(val) == 2:
            out[f"{k}_low"], out[f"{k}_high"] = val
        else:
            out[k] = val
    return out


COMMANDS = [collateral]

