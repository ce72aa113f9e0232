"""The quote slip for an insurer: one self-contained HTML file (plots embedded as PNG, no CDN).

Built from a :class:`finance_engine.insurance.quote.Quote` or from its ``to_dict()`` JSON alone (the
exceedance curves are stored on a return-period grid), so a slip can be re-rendered from a saved quote.
"""

from __future__ import annotations

from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd

from finance_engine.reports.html import figure_to_data_uri, fmt_number, render, table_html

__all__ = ["cover_items", "exceedance_plot", "premium_buildup_plot", "render_quote_slip"]


def _as_dict(q) -> Mapping[str, Any]:
    return q.to_dict() if hasattr(q, "to_dict") else q


def exceedance_plot(q) -> str:
    """OEP and AEP of the policy's payouts against the return period (log axis), with the layers."""
    d = _as_dict(q)
    ep = pd.DataFrame(d["risk"]["ep_curve"])
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(ep.return_period_years, ep.oep_cny, label="OEP (largest event of the year)", color="#2e6b3a")
    ax.plot(ep.return_period_years, ep.aep_cny, label="AEP (annual total)", color="#a05a00", ls="--")
    for lay in d.get("layers") or []:
        ax.axhspan(lay["attachment_cny"], lay["attachment_cny"] + lay["limit_cny"], color="#5577aa", alpha=0.12)
    ax.axvline(200, color="#a00", lw=0.8, ls=":", label="1-in-200")
    ax.set_xscale("log")
    ax.set_xlabel("return period (years)")
    ax.set_ylabel("payout (CNY)")
    ax.set_title("Exceedance curves of the policy payout" + (" (layers shaded)" if d.get("layers") else ""))
    ax.legend(fontsize=8, loc="upper left")
    return figure_to_data_uri(fig)


def premium_buildup_plot(q) -> str:
    """Stacked bar: pure premium, risk load, fixed costs, expenses, profit = gross premium."""
    p = _as_dict(q)["premium"]
    parts = [("pure premium", p["pure_premium_cny"], "#2e6b3a"), ("risk load", p["risk_load_cny"], "#7fa86b"),
             ("fixed costs", p["fixed_costs_cny"], "#bbb"), ("expenses", p["expenses_cny"], "#d9a441"),
             ("profit", p["profit_cny"], "#a05a00")]
    fig, ax = plt.subplots(figsize=(7, 1.9))
    left = 0.0
    for name, v, c in parts:
        ax.barh([0], [v], left=left, color=c, label=f"{name} {v:,.0f}")
        left += v
    ax.set_yticks([])
    ax.set_xlabel("CNY per year")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.45))
    ax.set_title(f"Gross premium {p['gross_premium_cny']:,.0f} CNY")
    return figure_to_data_uri(fig)


def _cover_value(v) -> str:
    """A cover term as a reader writes it: no Python ``None`` or dicts (a deductible is amount, unit, basis)."""
    if v is None:
        return "none"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_cover_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_cover_value(x) for x in v)
    if isinstance(v, float):
        return "unlimited" if v == float("inf") else f"{v:,.6g}"
    return str(v)


def _pm_text(v, se, digits: int = 0, unit: str = "") -> str:
    out = fmt_number(v, digits)
    if se is not None and se == se:
        out += f" ± {fmt_number(se, digits)}"
    return out + unit


def cover_items(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The cover's terms as a reader writes them. A term the cover leaves to the run (a sink index's limit,
    the value of the triggered sink, and its expected sink, which sets the trigger; a price floor's volume,
    the simulated credits) shows the value the quote used, with its Monte Carlo error where the run estimated
    it, never ``none`` (which would read as unlimited)."""
    cover, e = d["cover"], d.get("exposure") or {}
    kind = cover.get("kind")
    part = cover.get("participation") or 1.0
    si, si_se = e.get("sum_insured_cny"), e.get("sum_insured_mc_se_cny")
    ins, ins_se = e.get("insured_tco2e"), e.get("insured_tco2e_mc_se")
    from_run = ", estimated from the run (± Monte Carlo standard error)"
    out = []
    for k, v in cover.items():
        text = None
        if v is None and kind == "sink-index" and k == "limit_cny" and si is not None:
            text = (_pm_text(si / part, None if si_se is None else si_se / part, unit=" CNY")
                    + ": the value of the triggered sink (price x trigger x expected sink)"
                    + (from_run if cover.get("expected_sink_tco2e") is None else ""))
        elif v is None and kind == "sink-index" and k == "expected_sink_tco2e" and ins is not None:
            trig = cover.get("trigger_fraction")
            text = (_pm_text(ins, ins_se, unit=" tCO2e/yr") + ": the model's mean sink of the policy years" + from_run
                    + (f"; the trigger is {fmt_number(trig * ins, 0)} tCO2e ({trig:.0%} of it)" if trig else ""))
        elif v is None and kind == "price-floor" and k == "volume_tco2e" and ins is not None:
            text = (_pm_text(ins, ins_se, unit=" tCO2e/yr") + ": the simulated credits issued, the mean of the "
                    "policy years" + from_run)
        elif kind == "sink-index" and k == "error" and v == "none":
            text = "none (the index is the true sink)"
        elif v is None:
            text = "not set"
        out.append((k, text if text is not None else _cover_value(v)))
    return out


def _var_tvar_frame(rows) -> pd.DataFrame:
    """The VaR / TVaR table: a TVaR error the tail is too thin to give (fewer than 10 simulated years beyond
    the level) reads "too few years", not an open interval end."""
    df = pd.DataFrame(rows)
    if "tvar_se" in df.columns:
        df["tvar_se"] = ["too few years" if v is None or v != v else fmt_number(v, 0) for v in df["tvar_se"]]
    return df


def render_quote_slip(q, title_suffix: str | None = None) -> str:
    """The quote slip HTML (exceedance plot, premium build-up, subsidy split, PML, layer table, provenance)."""
    d = _as_dict(q)
    cover = d["cover"]
    title_suffix = title_suffix or cover.get("kind", "policy")
    pml = pd.DataFrame(d["risk"]["pml"])
    pml_wide = pml.pivot(index="return_period_years", columns="basis", values=["loss", "ci_low", "ci_high"])
    pml_wide.columns = [f"{b}_{v}_cny" for v, b in pml_wide.columns]
    pml_wide = pml_wide.reset_index()
    sub = d["subsidy"]
    subsidy = pd.DataFrame({"payer": list(sub["shares"]), "share": list(sub["shares"].values()),
                            "amount_cny": [sub["amounts_cny"][k] for k in sub["shares"]]})
    if sub.get("amounts_mc_se_cny"):  # a share of the gross premium: its error is the share of the premium's
        subsidy["amount_mc_se_cny"] = [sub["amounts_mc_se_cny"].get(k) for k in sub["shares"]]
    layers = pd.DataFrame(d["layers"]) if d.get("layers") else None
    if layers is not None:  # rate on line is on the upfront premium; the multiple on the expected total
        layers = layers[[c for c in ("layer", "expected_layer_loss_cny", "reinsurance_premium_cny",
                                     "reinsurance_premium_mc_se_cny", "upfront_premium_cny", "rate_on_line",
                                     "multiple", "multiple_mc_se", "loading_method", "prob_attachment",
                                     "prob_attachment_mc_se", "prob_exhaustion", "prob_exhaustion_mc_se")
                         if c in layers.columns]]
    by_peril = pd.DataFrame(d["aal_by_peril"]) if d.get("aal_by_peril") else None
    price_floor = cover.get("kind") == "price-floor"
    if by_peril is not None and price_floor and "covered" in by_peril.columns:
        # the price floor pays (strike - price)+ x volume: no peril triggers a payout (the engine's ground-up
        # rows mark every peril as covered, meaning only that none is excluded)
        by_peril["covered"] = "no"
    by_level = pd.DataFrame(d["aal_by_level"]) if d.get("aal_by_level") else None
    return render(
        "quote_slip.html", title=f"Quote slip — {title_suffix}", title_suffix=title_suffix, q=d,
        price_floor=price_floor,
        cover_items=cover_items(d),
        ep_plot=exceedance_plot(d), buildup_plot=premium_buildup_plot(d),
        pml=table_html(pml_wide, missing="open"),
        var_tvar=table_html(_var_tvar_frame(d["risk"]["var_tvar"]), percent=("level",), missing="open"),
        subsidy=table_html(subsidy, percent=("share",)),
        layers=None if layers is None else table_html(layers, digits=0, decimals={"multiple": 2, "multiple_mc_se": 2},
                                                      percent=("rate_on_line", "prob_attachment", "prob_attachment_mc_se",
                                                               "prob_exhaustion", "prob_exhaustion_mc_se")),
        by_peril=None if by_peril is None else table_html(by_peril),
        by_level=None if by_level is None else table_html(by_level),
        provenance=d["provenance"],
    )
