"""Plain-text tables for terminal output."""

from __future__ import annotations

import math

import pandas as pd


def _fmt(v, missing: str = "-") -> str:
    if v is None:
        return missing
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return missing
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:,.2f}"
        return f"{v:.3g}"
    return str(v)


def render_table(df: pd.DataFrame, max_rows: int = 200, missing: str = "-") -> str:
    """Right-aligned numbers, left-aligned text, a header rule; long tables are cut with a note. A missing
    value (None, NaN, an infinity) is shown as ``missing`` (e.g. ``open`` for an unbounded interval end)."""
    cut = len(df) > max_rows
    d = df.head(max_rows)
    cells = [[_fmt(v.item() if hasattr(v, "item") else v, missing) for v in row] for row in d.itertuples(index=False)]
    headers = [str(c) for c in d.columns]
    widths = [max([len(h)] + [_width(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [pd.api.types.is_numeric_dtype(d[c]) or _numbers_or_missing(d[c]) for c in d.columns]

    def line(vals):
        return "  ".join(_pad(v, w, right) for v, w, right in zip(vals, widths, numeric))

    out = [line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in cells]
    if cut:
        out.append(f"... {len(df) - max_rows} more rows (use --format json or --output)")
    return "\n".join(out)


def _numbers_or_missing(col: pd.Series) -> bool:
    """An object column of numbers with gaps (None): right-aligned like a numeric one."""
    vals = [v for v in col if v is not None]
    return col.dtype == object and len(vals) < len(col) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)


def interval_text(bounds, open_end: str = "unbounded") -> str:
    """``95% CI low - high`` of a Monte Carlo interval; an end that is null, NaN or infinite (too few draws
    to bound that quantile) is shown as ``open_end``."""
    return "95% CI " + " - ".join(f"{b:,.0f}" if b is not None and math.isfinite(b) else open_end for b in bounds)


def _width(s: str) -> int:
    # East Asian wide characters take two columns
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in s)


def _pad(s: str, w: int, right: bool) -> str:
    fill = " " * (w - _width(s))
    return fill + s if right else s + fill


def parameter_sd_text(sd, mc_se=None, low=None, high=None) -> str:
    """A parameter sd in a terminal table by the one rule the accounts and stress tables follow (README §5; the
    HTML reports' :func:`finance_engine.reports.html.parameter_sd_resolved`): ``sd [low, high]`` with its 95 %
    interval, or ``not resolved [0, high]`` for a clipped 0 of a figure that varies (its Monte Carlo error above
    0) and for a missing (NaN) sd; an exact 0 (the figure does not vary: Monte Carlo error 0) stays 0. The
    interval is left out where an end is missing."""
    from finance_engine.reports.html import NOT_RESOLVED, parameter_sd_resolved

    def num(x):
        x = x.item() if hasattr(x, "item") else x
        return None if x is None or isinstance(x, bool) or not isinstance(x, (int, float)) or x != x else float(x)

    v, e, lo, hi = num(sd), num(mc_se), num(low), num(high)
    ci = "" if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)) else \
        f" [{_fmt(lo)}, {_fmt(hi)}]"
    if v is None or not parameter_sd_resolved(v, e):
        return f"{NOT_RESOLVED}{ci}"
    return f"{_fmt(v)}{ci}"


def with_parameter_sd_cells(df: pd.DataFrame, draws_parameters: bool = True) -> pd.DataFrame:
    """``df`` with its ``parameter_sd`` column as text (:func:`parameter_sd_text`, against the row's ``mc_se`` and
    with the interval of ``parameter_sd_ci95_low`` / ``_high`` where the table has them); without parameter
    uncertainty (``draws_parameters`` False: the engine fills the column with zeros) the column is left out."""
    if "parameter_sd" not in df.columns:
        return df
    out = df.copy()
    if not draws_parameters:
        return out.drop(columns=["parameter_sd"])
    none = [None] * len(df)
    lo = df["parameter_sd_ci95_low"] if "parameter_sd_ci95_low" in df.columns else none
    hi = df["parameter_sd_ci95_high"] if "parameter_sd_ci95_high" in df.columns else none
    se = df["mc_se"] if "mc_se" in df.columns else none
    out["parameter_sd"] = [parameter_sd_text(v, e, a, b) for v, e, a, b in zip(df["parameter_sd"], se, lo, hi)]
    return out


def zero_one_bound(p, n_eff: int):
    """The rule-of-three 95 % interval of a probability estimated at exactly 0 or 1 over ``n_eff`` independent
    units (the collateral valuation's :func:`finance_engine.collateral._zero_one_bounds`, ``[0, 3/n]`` or
    ``[1 - 3/n, 1]``); None for any other probability (its standard error says how precise it is)."""
    from finance_engine.collateral import _zero_one_bounds

    if p is None or p != p:
        return None
    return _zero_one_bounds({"p": float(p)}, max(int(n_eff), 1)).get("p")


def probability_text(p, se=None, bound=None, digits: int = 2) -> str:
    """A probability as the collateral output prints it: ``p ± s.e.``, or at exactly 0 or 1 (``bound``, from
    :func:`zero_one_bound` or a result's ``zero_one_bounds_95``) ``p (95% bound lo - hi, rule of three)`` in
    place of a zero standard error; ``-`` where there is none."""
    p = p.item() if hasattr(p, "item") else p
    if p is None or p != p:
        return "-"
    if bound is not None:
        return f"{p:.{digits}%} (95% bound {bound[0]:.{digits}%} - {bound[1]:.{digits}%}, rule of three)"
    se = se.item() if hasattr(se, "item") else se
    if se is None or se != se or not math.isfinite(se):
        return f"{p:.{digits}%}"
    return f"{p:.{digits}%} ± {se:.{digits}%}"
