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
