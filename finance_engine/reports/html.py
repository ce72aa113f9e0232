"""Shared pieces of the HTML reports: embedded plots and a page template (works offline, no CDN)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are written by servers and CLIs
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from jinja2 import Environment, FileSystemLoader, select_autoescape  # noqa: E402

TEMPLATES = Path(__file__).resolve().parent / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def figure_to_data_uri(fig) -> str:
    """A matplotlib figure as an inline PNG data URI (the report stays one self-contained file)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def fmt_number(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        if v != v:
            return "-"
        if v in (float("inf"), float("-inf")):
            return "unbounded"  # an interval end that needs more paths
        return f"{v:,.{digits}f}"
    return str(v)


def fmt_significant(v: Any) -> str:
    """A number in a table of mixed figures (amounts, probabilities, ratios): amounts of 100 or more without
    decimals, others with three significant digits, so a 0.94 % share is not shown as 0.01."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) not in (0, float("inf")):
        if abs(v) >= 100:
            return fmt_number(v, 0)
        return f"{v:.3g}" if abs(v) < 1 else f"{v:,.2f}"
    return fmt_number(v)


def table_html(df: pd.DataFrame, digits: int | None = 0, percent: tuple[str, ...] = (),
               decimals: dict[str, int] | None = None, missing: str = "-") -> str:
    """A table; ``digits=None`` formats each number by its size (:func:`fmt_significant`: for tables whose
    columns mix amounts and probabilities); ``missing`` is what a cell without a value shows (``open`` for
    an interval's open end: pandas never passes a missing cell to the formatters)."""
    fmt = {c: (lambda x: f"{x:.1%}") for c in percent if c in df.columns}
    for c, d in (decimals or {}).items():
        if c in df.columns:
            fmt[c] = (lambda x, d=d: fmt_number(x, d))
    for c in df.columns:
        if c not in fmt and (digits is None or pd.api.types.is_float_dtype(df[c])):
            fmt[c] = fmt_significant if digits is None else (lambda x, d=digits: fmt_number(x, d))
    return df.to_html(index=False, formatters=fmt, border=0, classes="t", escape=True, na_rep=missing)


def render(template: str, **context: Any) -> str:
    _env.filters["n"] = fmt_number
    _env.filters["pct"] = lambda v, d=1: "-" if v is None else f"{100 * v:.{d}f}%"
    _env.filters["end"] = lambda v, d=0: "open" if v is None or v != v else fmt_number(v, d)  # an interval's end
    return _env.get_template(template).render(**context)
