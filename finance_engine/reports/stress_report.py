"""The stress-test report: one self-contained HTML file (plots embedded) and an Excel workbook."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from finance_engine.reports.html import (NOT_RESOLVED_FOOTNOTE, figure_to_data_uri, render, table_html,
                                         with_parameter_sd_text)

# Romanised names of Lishui's nine counties for plot labels (the plotting fonts may lack CJK glyphs;
# the tables keep the Chinese names).
COUNTY_LABELS = {"莲都区": "Liandu", "龙泉市": "Longquan", "青田县": "Qingtian", "云和县": "Yunhe", "庆元县": "Qingyuan",
                 "缙云县": "Jinyun", "遂昌县": "Suichang", "松阳县": "Songyang", "景宁畲族自治县": "Jingning"}


def plot_label(group: str) -> str:
    """A plot label for an account group (last path component, romanised when it is a Lishui county)."""
    name = str(group).split("/")[-1]
    return COUNTY_LABELS.get(name, name)


def _portfolio_plot(r) -> str:
    h = r.horizon[(r.horizon.level == "portfolio") & (r.horizon.metric == "cumulative_loss_tco2e")]
    fig, ax = plt.subplots(figsize=(7.5, 0.4 * len(h) + 1.2))
    ax.barh(h.scenario, h.diff_mean, xerr=1.96 * h.diff_mc_se, color="#a33", ecolor="#333")
    ax.set_xlabel("extra carbon loss over the horizon vs baseline (tCO2e, 95 % CI of the paired difference)")
    ax.invert_yaxis()
    return figure_to_data_uri(fig)


def _county_plot(r) -> str:
    h = r.horizon[(r.horizon.level == "county") & (r.horizon.metric == "cumulative_loss_tco2e")]
    piv = h.pivot_table(index="group", columns="scenario", values="diff_mean", aggfunc="first")
    piv.index = [plot_label(g) for g in piv.index]
    piv = piv.drop(columns=[c for c in ("baseline",) if c in piv.columns])
    fig, ax = plt.subplots(figsize=(8, 4))
    if not piv.empty:
        im = ax.imshow(piv.to_numpy(), aspect="auto", cmap="Reds")
        ax.set_yticks(range(len(piv.index)), piv.index, fontsize=7)
        ax.set_xticks(range(len(piv.columns)), piv.columns, rotation=40, ha="right", fontsize=7)
        fig.colorbar(im, ax=ax, label="extra loss (tCO2e)")
    ax.set_title("Extra carbon loss by county and scenario")
    return figure_to_data_uri(fig)


def _by_metric(df: pd.DataFrame) -> pd.DataFrame:
    """A per-scenario table turned to one row per figure and one column per scenario."""
    return df.set_index("scenario").T.rename_axis(index="metric", columns=None).reset_index()


def render_stress_report(r, title_suffix: str = "Lishui forest carbon", extra: Mapping[str, pd.DataFrame] | None = None) -> str:
    """HTML report of a :class:`finance_engine.stress.run.StressResult` (works offline)."""
    # every figure with its Monte Carlo error; a parameter sd clipped at 0 reads not resolved, and a run
    # without parameter uncertainty shows none (the engine reports zeros for it)
    on = bool(r.settings.switches.parameter_uncertainty)
    portfolio, port_unresolved = with_parameter_sd_text(r.portfolio, on=on, digits=None)
    county = r.horizon[(r.horizon.level == "county") & (r.horizon.metric.isin(
        ["cumulative_loss_tco2e", "cumulative_sink_tco2e", "cumulative_loss_value_cny"]))]
    county, county_unresolved = with_parameter_sd_text(
        county[["scenario", "group", "metric", "mean", "mc_se", "parameter_sd", "diff_mean", "diff_mc_se",
                "diff_parameter_sd"]], on=on)
    return render(
        "stress_report.html", title=f"Stress test — {title_suffix}", title_suffix=title_suffix, r=r,
        parameter_uncertainty=on,
        scenarios=table_html(r.scenarios.drop(columns=["sha256"]).assign(sha256=r.scenarios.sha256.str[:12])),
        portfolio=table_html(_by_metric(portfolio), digits=None),
        portfolio_note=NOT_RESOLVED_FOOTNOTE if port_unresolved else None,
        plot_portfolio=_portfolio_plot(r), plot_county=_county_plot(r), county=table_html(county),
        county_note=NOT_RESOLVED_FOOTNOTE if county_unresolved else None,
        concentration=table_html(r.concentration, digits=2, percent=("extra_loss_share_of_stock",)),
        footprints=None if r.footprints.empty else table_html(r.footprints, digits=3),
        loans=None if r.loans.empty else table_html(r.loans, digits=None),
        insurer=None if r.insurer.empty else table_html(_by_metric(r.insurer), digits=None),
        budget=None if r.budget.empty else table_html(_by_metric(r.budget.drop(columns=["note"])), digits=None),
        budget_note=None if r.budget.empty else str(r.budget["note"].iloc[0]),
        extra={k: table_html(v, digits=None) for k, v in (extra or {}).items()}, notes=r.notes,
        provenance={k: v for k, v in r.provenance.items()})


def write_stress_workbook(r, path: str | Path, extra: Mapping[str, pd.DataFrame] | None = None) -> Path:
    """An Excel workbook with one sheet per table (and a provenance sheet)."""
    p = Path(path)
    with pd.ExcelWriter(p) as xw:
        for name, df in {**r.tables(), **(extra or {})}.items():
            out = df.copy()
            for c in out.columns:
                if out[c].dtype == object:
                    out[c] = out[c].map(lambda v: v if isinstance(v, (str, int, float, type(None), np.number)) else str(v))
            out.to_excel(xw, sheet_name=name[:31], index=False)
        pd.DataFrame([{"key": k, "value": str(v)} for k, v in r.provenance.items()]).to_excel(
            xw, sheet_name="provenance", index=False)
    return p


__all__ = ["COUNTY_LABELS", "plot_label", "render_stress_report", "write_stress_workbook"]
