"""The stress-test report: one self-contained HTML file (plots embedded) and an Excel workbook."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from finance_engine.reports.html import (NOT_RESOLVED_FOOTNOTE, figure_to_data_uri, fmt_significant, render,
                                         table_html, with_parameter_sd_text)
from finance_engine.stress.buffer import BUFFER_NOTE, buffer_display_table

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


def _extra_table(name: str, df: pd.DataFrame) -> str:
    """An extra table (buffer, levers) as HTML; the buffer's quantiles with their 95 % intervals, or not resolved
    and the paths that would resolve them (:func:`finance_engine.stress.buffer.buffer_display_table`)."""
    if name == "buffer":
        return table_html(buffer_display_table(df, fmt=fmt_significant), digits=None)
    return table_html(df, digits=None)


def render_stress_report(r, title_suffix: str = "Lishui forest carbon", extra: Mapping[str, pd.DataFrame] | None = None) -> str:
    """HTML report of a :class:`finance_engine.stress.run.StressResult` (works offline)."""
    # every figure with its Monte Carlo error; a parameter sd with its 95 % interval ("sd [low–high]"), a sd
    # clipped at 0 reads not resolved, and a run without parameter uncertainty shows none (the engine reports
    # zeros for it)
    on = bool(r.settings.switches.parameter_uncertainty)
    portfolio, port_unresolved = with_parameter_sd_text(r.portfolio, on=on, digits=None)
    county = r.horizon[(r.horizon.level == "county") & (r.horizon.metric.isin(
        ["cumulative_loss_tco2e", "cumulative_sink_tco2e", "cumulative_loss_value_cny"]))]
    ci = [c for c in ("parameter_sd_ci95_low", "parameter_sd_ci95_high", "diff_parameter_sd_ci95_low",
                      "diff_parameter_sd_ci95_high") if c in county.columns]  # a result stored before: without
    county, county_unresolved = with_parameter_sd_text(
        county[["scenario", "group", "metric", "mean", "mc_se", "parameter_sd", "diff_mean", "diff_mc_se",
                "diff_parameter_sd", *ci]], on=on)
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
        extra={k: _extra_table(k, v) for k, v in (extra or {}).items()},
        extra_notes={k: BUFFER_NOTE for k in (extra or {}) if k == "buffer"}, notes=r.notes,
        provenance={k: v for k, v in r.provenance.items()})


def write_stress_workbook(r, path: str | Path, extra: Mapping[str, pd.DataFrame] | None = None,
                          provenance: pd.DataFrame | None = None) -> Path:
    """An Excel workbook with one sheet per table and a provenance sheet (``provenance``, default the result's
    provenance as key/value rows): :func:`write_workbook`."""
    sheets = {**r.tables(), **(extra or {})}
    sheets["provenance"] = (provenance if provenance is not None else
                            pd.DataFrame([{"key": k, "value": str(v)} for k, v in r.provenance.items()]))
    return write_workbook(path, sheets)


def _non_finite(x: float) -> str | None:
    """A number Excel cannot hold: NaN (missing) as an empty cell, an infinity as its text (an LTV of a pledge
    worth nothing, an unbounded interval's end)."""
    return None if x != x else ("inf" if x > 0 else "-inf")


def _cell(v):
    """A cell's value as xlsxwriter writes it: numbers and text as they are, NaN as an empty cell and an infinity
    as its text (:func:`_non_finite`; not Excel's #NUM! error), anything else as its text."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else _non_finite(float(v))
    if v is pd.NA or v is pd.NaT:
        return None
    return str(v)


def write_workbook(path: str | Path, sheets: Mapping[str, pd.DataFrame]) -> Path:
    """Write ``sheets`` (name -> table) to an Excel workbook, one sheet each, a header row and the rows below.

    Written with xlsxwriter in its constant-memory mode, row by row: a city stress test's workbook (about a million
    cells) took openpyxl, cell by cell through pandas, about 45 us a cell; this writer about a third of that
    (``docs/performance.md``). Sheet names are cut to Excel's 31 characters (``~2``, ``~3``... where two would
    clash); NaN and pandas' missing values are empty cells, an infinity the text ``inf`` / ``-inf``.
    """
    import xlsxwriter

    p = Path(path)
    wb = xlsxwriter.Workbook(str(p), {"constant_memory": True})
    try:
        used: set[str] = set()
        for name, df in sheets.items():
            sheet, n = str(name)[:31], 1
            while sheet.lower() in used:  # two names alike in their first 31 characters (Excel ignores case)
                n += 1
                sheet = f"{str(name)[:31 - len(str(n)) - 1]}~{n}"
            used.add(sheet.lower())
            ws = wb.add_worksheet(sheet)
            ws.write_row(0, 0, [str(c) for c in df.columns])
            # one Python list per column (numpy scalars to Python numbers at C speed), then the rows
            cols = []
            for c in df.columns:
                col = df[c]
                if col.dtype.kind in "iub" and not col.hasnans:
                    cols.append(col.to_numpy().tolist())
                elif col.dtype.kind == "f" and isinstance(col.dtype, np.dtype):
                    x = col.to_numpy(dtype=float)
                    cols.append([_non_finite(v) if m else v for v, m in zip(x.tolist(), ~np.isfinite(x))]
                                if not np.isfinite(x).all() else x.tolist())
                else:
                    cols.append([_cell(v) for v in col.tolist()])
            for i, row in enumerate(zip(*cols), start=1):
                ws.write_row(i, 0, row)
    finally:
        wb.close()
    return p


__all__ = ["COUNTY_LABELS", "plot_label", "render_stress_report", "write_stress_workbook", "write_workbook"]
