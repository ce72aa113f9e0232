"""The collateral memo for a loan committee: one self-contained HTML file."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from finance_engine.reports.html import figure_to_data_uri, render, table_html


def fan_chart(v) -> str:
    vals = v.paths["value"]
    bal = v.paths["balance"]
    t = np.arange(vals.shape[0])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for lo, hi, a in ((0.05, 0.95, 0.2), (0.25, 0.75, 0.35)):
        ax.fill_between(t, np.quantile(vals, lo, axis=1), np.quantile(vals, hi, axis=1), color="#2e6b3a", alpha=a,
                        label=f"P{int(lo * 100)}-P{int(hi * 100)}")
    ax.plot(t, np.median(vals, axis=1), color="#2e6b3a", label="median value")
    ax.step(t, np.r_[bal[:-1], bal[-2]] if len(bal) > 1 else bal, where="post", color="#a00", label="loan balance")
    ax.set_xlabel("year of the loan")
    ax.set_ylabel("CNY")
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Collateral value fan and loan balance")
    return figure_to_data_uri(fig)


def drivers_chart(v) -> str:
    """Each driver's value effect (CNY) with the 95 % CI of its paired (common random numbers) difference,
    as in the drivers table (``value_effect_mc_se_cny``)."""
    d = v.drivers[v.drivers.driver != "full model"]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(d) + 1))
    se = d["value_effect_mc_se_cny"].to_numpy(dtype=float) if "value_effect_mc_se_cny" in d else None
    ax.barh(d.driver, d.value_effect_cny, color=np.where(d.value_effect_cny > 0, "#2e6b3a", "#a00"),
            xerr=None if se is None else 1.96 * se, ecolor="#333", capsize=3)
    ax.set_xlabel("value gained when the driver is switched off (CNY; whiskers: 95 % CI of the paired difference)"
                  if se is not None else "value gained when the driver is switched off (CNY)")
    ax.invert_yaxis()
    return figure_to_data_uri(fig)


def render_collateral_memo(v, title_suffix: str = "carbon-pledge loan", extra_provenance: dict | None = None) -> str:
    probs = ("p_value_below_balance", "p_value_below_balance_mc_se", "p_top_up_call", "p_top_up_call_mc_se")
    by_year = v.by_year[["year", "balance_cny", "value_mean_cny", "value_mc_se_cny", "value_p05_cny", "value_p50_cny",
                         "value_p95_cny", "ltv_p95", *probs, "expected_top_up_cny"]]
    return render(
        "collateral_memo.html", title=f"Collateral memo — {title_suffix}", title_suffix=title_suffix, v=v,
        fan=fan_chart(v), by_year=table_html(by_year, percent=probs, decimals={"ltv_p95": 2}),
        drivers=None if v.drivers is None else table_html(v.drivers, percent=(
            "p_value_below_balance_any_time", "shortfall_effect", "shortfall_effect_mc_se")),
        drivers_plot=None if v.drivers is None else drivers_chart(v),
        sensitivities=None if v.sensitivities is None else table_html(v.sensitivities,
                                                                      percent=("p_value_below_balance_any_time",
                                                                               "p_value_below_balance_any_time_mc_se")),
        provenance={**v.provenance, **(extra_provenance or {})},
    )
