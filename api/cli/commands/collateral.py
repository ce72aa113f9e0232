"""``carbon-risk collateral``: value the pledged carbon of a loan and its risk over the term."""

from __future__ import annotations

import math
from pathlib import Path

import click

from api.cli.common import (
    FINITE,
    CLIError,
    crediting_option_names,
    crediting_options,
    OutputFile,
    ProgressBar,
    echo_json,
    force_option,
    format_option,
    interval_columns,
    json_text,
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
from api.cli.tables import interval_text, probability_text, render_table
from models._yaml import DataFileError, read_data_file


def _load_terms_file(path: str) -> dict:
    try:
        data, _ = read_data_file(path, "terms file")
    except DataFileError as exc:
        raise CLIError(str(exc)) from exc
    if not isinstance(data, dict):
        raise CLIError(f"{path}: the terms file must be a mapping of field -> value")
    return data


#: the drivers' paths (value_collateral's attribution_paths: fewer than the headline's, each driver one more run);
#: passed to the memo, which says so beside its drivers' table
ATTRIBUTION_PATHS = 2000


def _check_term_names(terms: dict, terms_file: str) -> None:
    """Refuse a terms file's keys that are no loan term, naming each with the closest known one: a misspelt
    ``interest_rat:`` read as a missing ``interest_rate`` (or a silently ignored optional term) before."""
    import difflib

    from finance_engine.loan_terms import LoanTerms

    known = list(LoanTerms.model_fields)
    unknown = [k for k in terms if k not in LoanTerms.model_fields]
    if not unknown:
        return
    parts = []
    for k in unknown:
        close = difflib.get_close_matches(str(k), known, n=1, cutoff=0.6)
        parts.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise CLIError(f"{terms_file}: unknown loan term{'s' if len(unknown) > 1 else ''} {', '.join(parts)}; "
                   f"the terms are {', '.join(known)}")


@click.command("collateral")
@portfolio_option
@parameters_option
@click.option("--terms", "terms_file", type=click.Path(dir_okay=False), default=None,
              help="Loan terms as YAML/JSON (fields of LoanTerms); options below override it.")
@click.option("--amount", "amount_cny", type=FINITE, default=None, help="Loan amount, CNY.")
@click.option("--term", "term_years", type=int, default=None, help="Term in years.")
@click.option("--rate", "interest_rate", type=FINITE, default=None, help="Interest rate per year (0.0435 = 4.35 %).")
@click.option("--amortisation", type=click.Choice(["bullet", "annuity", "linear"]), default=None)
@click.option("--pledge-rate", type=FINITE, default=None, help="Maximum LTV at origination (质押率).")
@click.option("--ltv-trigger", type=FINITE, default=None, help="LTV above which a top-up is called.")
@click.option("--pd", "borrower_pd", type=FINITE, default=None, help="Borrower PD (enables LGD, EL, IRB capital).")
@click.option("--mortgage", "forest_right_mortgage_cny", type=FINITE, default=None,
              help="Forest-right mortgage value, CNY.")
@click.option("--guarantee", "guarantee_cny", type=FINITE, default=None, help="Guarantee, CNY.")
@click.option("--credit-type", type=click.Choice(["ccer", "carbon_puhui", "tanpiao"]), default=None)
@click.option("--price-scenario", type=click.Choice(["current_policies", "delayed_transition", "net_zero", "price_crash"]),
              default=None, help="Let prices fluctuate around an NGFS-style scenario path.")
@click.option("--price-loss-correlation", type=click.FloatRange(-1, 1), default=None,
              help="Correlate price shocks with the pledged forest's annual losses (stress).")
@click.option("--insured-price", type=FINITE, default=None,
              help="Assign a sink-loss policy to the bank paying this CNY/tCO2e for destroyed stock (with a --terms "
                   "file that has an insurance block, only its agreed price changes).")
@crediting_options("The pledged project's crediting: ")
@click.option("--parcels", "parcel_ids", default=None,
              help="Comma-separated pledged parcel ids. Without --parcels or --project the whole portfolio is pledged.")
@click.option("--project", "project_id", default=None,
              help="Pledge every parcel of this project_id (not with --parcels).")
@click.option("--paths", type=click.IntRange(32, 1_000_000), default=10_000, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=2026, show_default=True)
@click.option("--no-attribution", is_flag=True, help="Skip the value-driver runs (faster).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write a report: .html (collateral memo), .xlsx (with loan-terms and provenance sheets) or .json.")
@force_option
@format_option
def collateral(portfolio, parameters, terms_file, parcel_ids, project_id, paths, seed, no_attribution, workers,
               output, force, fmt, insured_price, **overrides):
    """Value the pledged carbon: worth today, how it can fall, and how much is safe to lend.

    The pledge is every parcel of --project, or the --parcels listed; with neither, the whole
    portfolio is pledged.

    \b
    Examples:
      carbon-risk collateral --amount 3000000 --term 3 --rate 0.0435 --project LS-LQ-P03
      carbon-risk collateral --terms loan.yaml --pd 0.02 --mortgage 1500000 --format json
      carbon-risk collateral --amount 200000 --term 2 --rate 0.04 --parcels LS-000001,LS-000002 -o memo.html
    """
    from finance_engine.collateral import LoanTermsError, value_collateral

    if parcel_ids is not None and project_id is not None:
        raise CLIError("give --parcels or --project, not both (neither: the whole portfolio is pledged)")
    terms = _load_terms_file(terms_file) if terms_file else {}
    if terms_file:
        _check_term_names(terms, terms_file)
    terms.update({k: v for k, v in overrides.items() if v is not None})
    if insured_price is not None:
        block = terms.get("insurance")
        terms["insurance"] = {**(block if isinstance(block, dict) else {}),
                              "agreed_price_cny_per_tco2e": insured_price}
    for req, flag in (("amount_cny", "--amount"), ("term_years", "--term"), ("interest_rate", "--rate")):
        if req not in terms:
            raise CLIError(f"missing loan term {req} (give {flag} or a --terms file)")
    params = load_model(parameters)
    loan = _check_terms(terms, terms_file)
    _check_crediting(loan, params, terms_file, overrides)
    out = OutputFile(output, suffixes=(".html", ".htm", ".xlsx", ".json"), force=force,
                     inputs=[portfolio_input(portfolio), *parameter_inputs(params), ("terms file", terms_file)]) \
        if output else None
    pf = load_portfolio_or_demo(portfolio, params)
    ids = [x.strip() for x in parcel_ids.split(",") if x.strip()] if parcel_ids is not None else None
    if ids is not None and not ids:
        raise CLIError(f"--parcels {parcel_ids!r}: names no parcel id")
    try:
        v = value_collateral(pf, params, loan, parcel_ids=ids, project_id=project_id, paths=paths, seed=seed,
                             attribution=not no_attribution, attribution_paths=ATTRIBUTION_PATHS, workers=workers,
                             progress=ProgressBar("valuing" if no_attribution else "valuing with drivers"))
    except LoanTermsError as exc:
        raise CLIError(str(exc)) from exc
    show_model_notes(v.provenance)
    if out is not None:
        _write(v, out, _pledge_label(project_id, ids, pf.source))
        note(f"wrote {output}")
    if fmt == "json":
        echo_json(v.to_dict())
        return
    vt = v.value_today
    click.echo(f"Pledged: {vt['pledged_parcels']} parcels, {vt['pledged_area_ha']:,.1f} ha, "
               f"stock {vt['stock_today_tco2e']:,.0f} tCO2e")
    from finance_engine.reports.html import fmt_parameter_sd

    psd = vt["parameter_sd_cny"]  # None: drawn without parameter uncertainty; a clipped 0 is "not resolved"
    # with its 95 % interval in brackets
    psd_ci = (vt.get("parameter_sd_ci95_low_cny"), vt.get("parameter_sd_ci95_high_cny"))
    psd_text = "" if psd is None else f"parameter sd {fmt_parameter_sd(psd, vt['mc_se_cny'], ci=psd_ci)}; "
    click.echo(f"Value today: {vt['value_cny']:,.0f} CNY  (MC s.e. {vt['mc_se_cny']:,.0f}; "
               f"{psd_text}95% CI {vt['ci95_cny'][0]:,.0f} - {vt['ci95_cny'][1]:,.0f})")
    c = vt["credits_over_horizon_tco2e"]
    click.echo(f"{_credits_heading(v.provenance)}: mean {c['mean']:,.0f} ± {c['mc_se']:,.0f}; "
               + " / ".join(f"P{k} {c[f'p{k}']:,.0f} ({interval_text(c[f'p{k}_ci95'])})" for k in (10, 50, 90))
               + f" tCO2e; price today {vt['price_today_cny_per_tco2e']:.1f} CNY/t; "
               f"practice appraisal (expected sink x price) {vt['appraisal_practice_cny']:,.0f} CNY")
    r, s = v.risk, v.sizing
    zb = r.get("zero_one_bounds_95") or {}
    value_table, balance_table = by_year_tables(v.by_year, zb)
    click.echo("\nCollateral value over the term (CNY; the mean ± its Monte Carlo s.e., each quantile with its 95% CI):")
    click.echo(render_table(value_table, missing="open"))
    click.echo("\nBalance and calls over the term: the probabilities compare each path's value with that path's "
               "balance after its met top-up calls (their mean: balance_mean_paths_cny); balance_schedule_cny is the "
               "loan schedule's without calls (± Monte Carlo s.e.; at exactly 0 or 1 the rule-of-three 95% bound):")
    click.echo(render_table(balance_table, missing="open"))

    def prob(name: str) -> str:
        """A probability with its error, or at exactly 0 or 1 (error 0) its rule-of-three 95 % bound."""
        return probability_text(r[name], r.get(name + "_mc_se"), zb.get(name))

    unresolved = set(r.get("not_resolved") or []) | set(s.get("not_resolved") or [])
    mark = lambda name: " [unresolved]" if name in unresolved else ""  # noqa: E731
    click.echo(f"\nP(value below balance at any time) {prob('p_value_below_balance_any_time')}; P(any top-up call) "
               f"{prob('p_any_top_up_call')}; collateral VaR95 {r['collateral_var95_cny']:,.0f} "
               f"({interval_text(r['collateral_var95_ci95_cny'])}), ES99 {r['collateral_es99_cny']:,.0f} "
               f"± {r['collateral_es99_mc_se_cny']:,.0f}{mark('collateral_es99_cny')} CNY (today's money: the "
               "end-of-term value discounted)")
    click.echo(f"Largest loan for P(shortfall) <= {s['target_shortfall_probability']:.0%}: {s['max_loan_cny']:,.0f} CNY "
               f"({interval_text(s['max_loan_ci95_cny'])}; haircut {s['implied_haircut']:.0%}){mark('max_loan_cny')}; "
               f"requested loan {'within' if s['requested_loan_within_limit'] else 'ABOVE'} that limit")
    if unresolved:
        need = max([x for x in (s.get("not_resolved_paths_needed"), r.get("not_resolved_paths_needed")) if x] or [0])
        click.echo(f"UNRESOLVED: {', '.join(sorted(unresolved))}: {s.get('not_resolved_note') or r.get('not_resolved_note')}"
                   + (f"; run --paths {need:,} or more" if need else ""))
    click.echo(f"LTV at origination {r['ltv_at_origination']:.0%} against the pledge rate {v.terms['pledge_rate']:.0%}"
               + (" -> ABOVE the pledge rate" if s["requested_ltv_exceeds_pledge_rate"] else ""))
    sec = v.security
    click.echo(f"Carbon covers {sec['carbon_cover_of_exposure']:.0%} of the exposure, {sec['carbon_share_of_security']:.0%} "
               "of the security" + (" -> credit enhancement only" if sec["credit_enhancement_only"] else ""))
    if v.credit:
        cr = v.credit
        click.echo(f"F-IRB LGD {cr['firb_lgd_carbon_as_other_physical']:.1%} (unsecured {cr['firb_lgd_unsecured']:.0%}), "
                   f"EL {cr['expected_loss_cny']:,.0f} CNY, K {cr['irb_capital_k']:.2%} (effective maturity "
                   f"{cr['maturity_years']:.2f} years), RWA {cr['rwa_cny']:,.0f} CNY; simulated forced-sale LGD "
                   f"{cr['simulated_lgd_forced_sale']:.1%}")
    if v.drivers is not None:
        n_attr = min(paths, ATTRIBUTION_PATHS)
        click.echo("\nWhat drives value down (each switched off in turn, common random numbers"
                   + (f"; on {n_attr:,} paths, fewer than the headline's {paths:,}: the full model row is that run's own "
                      "value and differs from the value today within Monte Carlo noise):" if n_attr < paths else "):"))
        click.echo(render_table(v.drivers[["driver", "value_cny", "value_effect_cny", "value_effect_mc_se_cny",
                                           "p_value_below_balance_any_time", "shortfall_effect_mc_se"]]))
    p = v.provenance
    click.echo(f"\nmodel {p['model_version']} ({p['code_version']}), parameters sha256 {p['parameter_sha256'][:12]}, "
               f"seed {p['seed']}, {p['paths']} paths")


def _credits_heading(prov: dict) -> str:
    """What the credits figure counts: the credits issued within the valuation horizon (calendar years), and
    where the pledged project's crediting period starts after the horizon's first year or ends before its last,
    the years whose removals are credited (none after the crediting period: ``Credits over 30 years`` read as 30
    years of credits for a project whose crediting ended after 13)."""
    h = int(prov["horizon_years"])
    start = prov.get("start_year")
    cr = prov.get("crediting") or {}
    if start is None:
        return f"Credits issued over the {h}-year valuation horizon"
    start, end = int(start), int(start) + h - 1
    head = f"Credits issued over the {h}-year valuation horizon {start}-{end}"
    cs = start - int(cr.get("years_credited_before_start") or 0)
    period = cr.get("crediting_period_years")
    ce = cs + int(period) - 1 if period else None
    if cs <= start and (ce is None or ce >= end):
        return head + " (all of it in the crediting period)"
    first, last = max(cs, start), end if ce is None else min(ce, end)
    period_text = f"crediting period {cs}-{ce}" if ce is not None else f"crediting from {cs}"
    if last < first:
        return head + f" (no removals credited in it: {period_text})"
    return (head + f", for the removals of {first}-{last} ({last - first + 1} years; {period_text}: nothing is "
            "credited outside it)")


def _cell(x):
    """A by-year number, None where missing (NaN)."""
    return None if x is None or x != x else float(x)


def _with_ci(x, lo, hi, fmt: str = ",.0f") -> str:
    """``x (lo - hi)``, an open end (too few paths to bound that quantile) ``open``."""
    end = (lambda e: "open" if e is None or not math.isfinite(e) else f"{e:{fmt}}")
    return f"{x:{fmt}} ({end(_cell(lo))} - {end(_cell(hi))})"


def by_year_tables(by_year, zero_one: dict):
    """The by-year figures as the terminal shows them, each beside its Monte Carlo error as the memo and the API
    give them (``CollateralValuation.by_year``): the value's mean ± s.e. and its quantiles with their 95 % CIs;
    then the balance (the schedule's and the paths' mean after met top-up calls, which the probabilities compare
    against), the LTV P95 with its CI and the probabilities ± s.e. (at exactly 0 or 1 the rule-of-three bound of
    ``zero_one``, the result's ``risk.zero_one_bounds_95``)."""
    import pandas as pd

    value_rows, balance_rows = [], []
    for _, r in by_year.iterrows():
        y = int(r["year"])
        se = _cell(r.get("value_mc_se_cny"))
        value_rows.append({
            "year": y,
            "value_mean_cny ± s.e.": f"{r['value_mean_cny']:,.0f}" + ("" if se is None else f" ± {se:,.0f}"),
            **{f"value_{name}_cny (95% CI)": _with_ci(r[f"value_{q}_cny"], r.get(f"value_{q}_ci95_low_cny"),
                                                      r.get(f"value_{q}_ci95_high_cny"))
               for q, name in (("p05", "p05"), ("p50", "p50"), ("p95", "p95"))}})
        mean_bal = _cell(r.get("balance_mean_cny"))
        ltv_lo, ltv_hi = r.get("ltv_p95_ci95_low"), r.get("ltv_p95_ci95_high")
        top_se = _cell(r.get("expected_top_up_mc_se_cny"))
        balance_rows.append({
            "year": y,
            "balance_schedule_cny": float(r["balance_cny"]),
            "balance_mean_paths_cny": mean_bal,
            "ltv_p95 (95% CI)": (_with_ci(r["ltv_p95"], ltv_lo, ltv_hi, ".3f") if _cell(ltv_lo) is not None
                                 or _cell(ltv_hi) is not None else f"{r['ltv_p95']:.3f}"),
            **{f"{col} ± s.e.": probability_text(r[col], _cell(r.get(f"{col}_mc_se")), zero_one.get(f"{col}_year_{y}"))
               for col in ("p_value_below_balance", "p_top_up_call")},
            "expected_top_up_cny ± s.e.": f"{r['expected_top_up_cny']:,.0f}"
                                          + ("" if top_se is None else f" ± {top_se:,.0f}"),
        })
    balance = pd.DataFrame(balance_rows)
    if balance["balance_mean_paths_cny"].isna().all():  # a result without it (the schedule is then the paths')
        balance = balance.drop(columns=["balance_mean_paths_cny"])
    return pd.DataFrame(value_rows), balance


def _check_terms(terms: dict, terms_file: str | None):
    """The loan terms validated, and every name in them known (finance_engine.loan_terms.check_loan_terms),
    before any simulation: a bad one is one line naming the source and field, exit 2."""
    from finance_engine.loan_terms import LoanTermsError, check_loan_terms

    try:
        return check_loan_terms(terms)
    except LoanTermsError as exc:
        raise CLIError(f"{terms_file or 'loan terms'}: {exc}") from None


def _check_crediting(loan, params, terms_file: str | None, overrides: dict) -> None:
    """The crediting start year and period against the model's crediting rules, before any simulation: a bad one
    is one line naming the option it came from (or the terms file's key), exit 2."""
    from finance_engine.loan_terms import CREDITING_TERMS, LoanTermsError, check_crediting_terms

    try:
        check_crediting_terms(loan, params)
    except LoanTermsError as exc:
        given = [k for k in CREDITING_TERMS if overrides.get(k) is not None]
        # a term given as an option is named as the option; one from the terms file by its key there
        raise CLIError(f"{terms_file or 'loan terms'}: {crediting_option_names(str(exc), given)}") from None


def _pledge_label(project_id: str | None, ids: list[str] | None, source: str) -> str:
    """What was pledged, for a report's title: the project, the parcels, or the whole portfolio."""
    if project_id is not None:
        return f"project {project_id} of {source}"
    if ids is not None:
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        return f"parcels {shown} of {source}"
    return f"the whole portfolio {source}"


def _write(v, out: OutputFile, pledge: str = "carbon-pledge loan") -> None:
    if out.suffix == ".json":
        out.write_text(json_text(v))
    elif out.suffix == ".xlsx":
        import pandas as pd

        prov = out.provenance(v.provenance)

        def workbook(p):
            with pd.ExcelWriter(p, engine="openpyxl") as xw:
                pd.DataFrame([_flat(v.value_today)]).to_excel(xw, sheet_name="value_today", index=False)
                pd.DataFrame([_flat(v.terms)]).to_excel(xw, sheet_name="loan_terms", index=False)
                v.by_year.to_excel(xw, sheet_name="by_year", index=False)
                pd.DataFrame([_flat(v.risk)]).to_excel(xw, sheet_name="risk", index=False)
                pd.DataFrame([_flat(v.sizing)]).to_excel(xw, sheet_name="sizing", index=False)
                pd.DataFrame([_flat(v.security)]).to_excel(xw, sheet_name="security", index=False)
                if v.credit:
                    pd.DataFrame([_flat(v.credit)]).to_excel(xw, sheet_name="credit", index=False)
                if v.drivers is not None:
                    v.drivers.to_excel(xw, sheet_name="drivers", index=False)
                if v.sensitivities is not None:
                    v.sensitivities.to_excel(xw, sheet_name="sensitivities", index=False)
                provenance_frame(prov).to_excel(xw, sheet_name="provenance", index=False)

        out.write(workbook)
    else:
        from finance_engine.reports.collateral_memo import render_collateral_memo

        # the memo names the pledge and the files it was made from (with their SHA-256), as the workbook does
        doc = out.provenance(v.provenance)
        inputs = "; ".join(f"{i['role']}: {i['path']} (sha256 {str(i['sha256'])[:12]})" for i in doc["inputs"])
        out.write_text(render_collateral_memo(v, title_suffix=pledge, extra_provenance={"inputs": inputs},
                                              attribution_paths=ATTRIBUTION_PATHS))


def _flat(d: dict) -> dict:
    """One spreadsheet cell per number: ``{"x": [lo, hi]}`` -> ``x_low``, ``x_high``; nested dicts -> ``x_key``;
    other lists -> text. Numbers stay numbers (an infinite one, e.g. no limit, stays infinite)."""
    out = {}
    for k, val in d.items():
        if isinstance(val, dict):
            out.update(_flat({f"{k}_{kk}": vv for kk, vv in val.items()}))
        elif isinstance(val, (list, tuple)) and len(val) == 2 and all(
                x is None or isinstance(x, (int, float)) for x in val):
            lo, hi = interval_columns(k)
            out[lo], out[hi] = val
        elif isinstance(val, (list, tuple)):
            out[k] = ", ".join(str(x) for x in val)
        else:
            out[k] = val
    return out


COMMANDS = [collateral]

