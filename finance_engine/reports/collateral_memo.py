"""The collateral memo for a loan committee: one self-contained HTML file."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from finance_engine.reports.html import figure_to_data_uri, fmt_number, render, table_html


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


def _pct(x: float, d: int = 1) -> str:
    return f"{100 * x:.{d}f}%"


def _get(row, col):
    """A by-year cell, None where the column is absent or the value missing (NaN)."""
    x = row.get(col) if hasattr(row, "get") else None
    return None if x is None or x != x else float(x)


def _with_ci(x, lo, hi, f) -> str:
    """``x (lo – hi)``, an open end as ``open``, the interval left out where the result has none."""
    if lo is None and hi is None:
        return f(x)
    end = (lambda e: "open" if e is None else f(e))
    return f"{f(x)} ({end(lo)} – {end(hi)})"


def _with_se(x, se, f) -> str:
    return f(x) if se is None else f"{f(x)} ± {f(se)}"


def by_year_table(v) -> pd.DataFrame:
    """The memo's by-year table with readable headers and units: each simulated figure beside its Monte Carlo
    error (a mean's s.e., a quantile's 95 % CI), a probability of exactly 0 or 1 with its rule-of-three 95 %
    interval (``risk.zero_one_bounds_95``) in place of a zero s.e."""
    zb = (v.risk or {}).get("zero_one_bounds_95") or {}
    n0 = (lambda x: fmt_number(x, 0))

    def prob(row, col):
        p, b = _get(row, col), zb.get(f"{col}_year_{int(row['year'])}")
        if b is not None:
            return f"{_pct(p)} (95 % bound {_pct(b[0], 2)} – {_pct(b[1], 2)}, rule of three)"
        return _with_se(p, _get(row, f"{col}_mc_se"), _pct)

    rows = []
    for _, r in v.by_year.iterrows():
        out = {"Year of the loan": str(int(r["year"])),
               "Balance, schedule (CNY)": n0(r["balance_cny"])}
        if _get(r, "balance_mean_cny") is not None:
            out["Balance, mean of the paths (CNY; met top-up calls carried forward)"] = n0(r["balance_mean_cny"])
        out["Collateral value, mean ± s.e. (CNY)"] = _with_se(r["value_mean_cny"], _get(r, "value_mc_se_cny"), n0)
        for q, name in (("05", "P5"), ("50", "median"), ("95", "P95")):
            out[f"Value {name} (CNY; 95 % CI)"] = _with_ci(r[f"value_p{q}_cny"], _get(r, f"value_p{q}_ci95_low_cny"),
                                                          _get(r, f"value_p{q}_ci95_high_cny"), n0)
        out["LTV P95 (balance / value; 95 % CI)"] = _with_ci(r["ltv_p95"], _get(r, "ltv_p95_ci95_low"),
                                                             _get(r, "ltv_p95_ci95_high"), lambda x: fmt_number(x, 2))
        out["P(value below balance) ± s.e."] = prob(r, "p_value_below_balance")
        out["P(top-up call) ± s.e."] = prob(r, "p_top_up_call")
        out["Expected top-up ± s.e. (CNY)"] = _with_se(r["expected_top_up_cny"], _get(r, "expected_top_up_mc_se_cny"), n0)
        rows.append(out)
    return pd.DataFrame(rows)


def drivers_basis(v, attribution_paths: int | None = None) -> dict | None:
    """On how many paths the drivers were computed, against the headline's: the drivers' table is its own
    engine run at ``attribution_paths`` (``value_collateral``'s default 2,000; the valuation's paths if more),
    so its "full model" row is that run's valuation and differs from the headline within Monte Carlo noise.
    ``attribution_paths`` is what the valuation was given (None: not known to the caller; the table then says
    whether its paths are the headline's by comparing the full model's value with the headline's)."""
    if v.drivers is None:
        return None
    paths = int(v.provenance["paths"])
    full = v.drivers[v.drivers.driver == "full model"]
    full_value = float(full["value_cny"].iloc[0]) if len(full) else None
    n = None if attribution_paths is None else min(paths, int(attribution_paths))
    same = (n == paths) if n is not None else (full_value is not None and full_value == v.value_today["value_cny"])
    return {"paths": paths, "attribution_paths": paths if same else n, "same": same, "full_value": full_value,
            "headline": v.value_today["value_cny"], "headline_se": v.value_today.get("mc_se_cny")}


def render_collateral_memo(v, title_suffix: str = "carbon-pledge loan", extra_provenance: dict | None = None,
                           attribution_paths: int | None = None) -> str:
    """The memo. ``attribution_paths``: the paths the drivers were given (``value_collateral``'s argument), said
    beside the drivers' table (when not given, the table says whether they are fewer than the headline's)."""
    return render(
        "collateral_memo.html", title=f"Collateral memo — {title_suffix}", title_suffix=title_suffix, v=v,
        fan=fan_chart(v), by_year=table_html(by_year_table(v)),
        drivers_basis=drivers_basis(v, attribution_paths),
        drivers=None if v.drivers is None else table_html(v.drivers, percent=(
            "p_value_below_balance_any_time", "shortfall_effect", "shortfall_effect_mc_se")),
        drivers_plot=None if v.drivers is None else drivers_chart(v),
        sensitivities=None if v.sensitivities is None else table_html(v.sensitivities,
                                                                      percent=("p_value_below_balance_any_time",
                                                                               "p_value_below_balance_any_time_mc_se")),
        provenance={**v.provenance, **(extra_provenance or {})},
    )
