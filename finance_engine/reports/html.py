"""Shared pieces of the HTML reports: embedded plots and a page template (works offline, no CDN)."""

from __future__ import annotations

import base64
import io
import math
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


# A parameter (epistemic) sd is the variance-components estimate sqrt(max(0, (MSB - MSW) / m)) over the paths'
# parameter sets (finance_engine.simulation.summary.nested_moments). An estimate below zero is clipped at 0:
# the paths do not resolve the parameters' spread, so that 0 reads "not resolved", never "no spread". A run
# without parameter uncertainty has no parameter sd at all (None, or a table's columns left out), which is
# "off", not "not resolved". The dashboard applies the same rule (api/static/js/i18n.js, paramSd).
NOT_RESOLVED = "not resolved"
NOT_RESOLVED_NOTE = "0: the spread across parameter sets is below the Monte Carlo noise at these paths"
NOT_RESOLVED_FOOTNOTE = (f"{NOT_RESOLVED}: a parameter sd whose variance-components estimate fell below zero and was "
                         f"clipped at 0 ({NOT_RESOLVED_NOTE}; more paths may resolve it).")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parameter_sd_resolved(sd: Any, mc_se: Any = None) -> bool:
    """False for a parameter sd of exactly 0 that the estimator clipped: the figure varies (its Monte Carlo
    error ``mc_se`` is above 0, or unknown) but the spread across parameter sets is not resolved. A 0 whose
    figure does not vary at all (``mc_se`` exactly 0: a scenario's difference from itself, a premium with no
    payout) is an exact 0, and any other value is resolved as it is."""
    if not _finite(sd) or sd != 0:
        return True
    return _finite(mc_se) and mc_se == 0


#: the suffixes of a parameter sd's 95 % interval columns (``<figure>_parameter_sd_ci95_low`` / ``_high``)
PARAMETER_SD_CI_SUFFIXES = ("_ci95_low", "_ci95_high")


def fmt_parameter_sd_interval(ci: Any, digits: int | None = 0) -> str:
    """A parameter sd's 95 % interval ``(low, high)`` as the reports append it to the sd, `` [low–high]``
    (as the dashboard's ``psd_ci``); empty where either end is missing or not finite (none was computed)."""
    try:
        low, high = ci
    except (TypeError, ValueError):
        return ""
    low, high = (float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None for x in (low, high))
    if not (_finite(low) and _finite(high)):
        return ""
    f = fmt_significant if digits is None else (lambda x: fmt_number(x, digits))
    return f" [{f(low)}–{f(high)}]"


def fmt_parameter_sd(sd: Any, mc_se: Any = None, digits: int | None = 0, note: bool = False, ci: Any = None) -> str:
    """A parameter sd as the reports show it: ``not resolved`` (with ``note``: and why) for a clipped 0
    (:func:`parameter_sd_resolved`), else the number (``digits=None``: by its size, :func:`fmt_significant`),
    followed by its 95 % interval ``ci`` = ``(low, high)`` where given (:func:`fmt_parameter_sd_interval`: a
    clipped 0 reads ``not resolved [0–high]``, the upper end bounding the spread). The caller leaves out a run
    without parameter uncertainty (its sd is None)."""
    interval = fmt_parameter_sd_interval(ci, digits)
    if not parameter_sd_resolved(sd, mc_se):
        return f"{NOT_RESOLVED}{interval} ({NOT_RESOLVED_NOTE})" if note else f"{NOT_RESOLVED}{interval}"
    return (fmt_significant(sd) if digits is None else fmt_number(sd, digits)) + interval


def with_parameter_sd_text(df: pd.DataFrame, on: bool = True, digits: int | None = 0) -> tuple[pd.DataFrame, bool]:
    """``df`` with each ``*parameter_sd`` column as text (:func:`fmt_parameter_sd` against the column's Monte
    Carlo error, the same name with ``mc_se``, and with its 95 % interval where the table has it: the columns
    ``<column>_ci95_low`` / ``_high``, which the text takes in and which are then left out); with parameter
    uncertainty off (``on`` False) those columns are left out, intervals and all (the engine fills them with
    zeros). Returns the table and whether a cell reads not resolved."""
    cols = [c for c in df.columns if str(c).endswith("parameter_sd")]
    ci_cols = {c: [f"{c}{s}" for s in PARAMETER_SD_CI_SUFFIXES] for c in cols
               if all(f"{c}{s}" in df.columns for s in PARAMETER_SD_CI_SUFFIXES)}
    dropped = [x for pair in ci_cols.values() for x in pair]
    if not on:
        return df.drop(columns=cols + dropped), False
    out, unresolved = df.drop(columns=dropped), False
    for c in cols:
        se_col = str(c)[:-len("parameter_sd")] + "mc_se"
        se = df[se_col] if se_col in df.columns else pd.Series(None, index=df.index, dtype=object)
        ci = zip(*(df[x] for x in ci_cols[c])) if c in ci_cols else (None for _ in range(len(df)))
        out[c] = [fmt_parameter_sd(v, e, digits, ci=i) for v, e, i in zip(df[c], se, ci)]
        unresolved = unresolved or any(not parameter_sd_resolved(v, e) for v, e in zip(df[c], se))
    return out, unresolved


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
    _env.filters["psd"] = fmt_parameter_sd  # {{ sd | psd(mc_se, note=True) }}: a clipped 0 reads not resolved
    _env.filters["psd_ci"] = fmt_parameter_sd_interval  # {{ (low, high) | psd_ci }}: " [low–high]", "" if none
    return _env.get_template(template).render(**context)
