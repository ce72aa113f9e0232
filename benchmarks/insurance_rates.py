"""Model premium rates on the Lishui demo portfolio next to published Chinese forest and carbon-sink rates.

Run ``python -m benchmarks.insurance_rates [--paths N] [--seed S] [--markdown]``. The published rates
come from ``finance_engine/data/insurance_defaults.yaml`` (``published_rates``, from
finance_practice.md §2); the model rates from :func:`finance_engine.insurance.quote` with the
default parameter set, the default loadings (cost of capital on the 1-in-200 TVaR less the mean, 20 % expenses,
5 % profit) and, for comparison, the Wang transform with lambda = 0.3. One simulation run (one policy
year per path) is shared by every cover, so the rows are on common random numbers.
"""

from __future__ import annotations

import argparse
import math

import pandas as pd

from finance_engine.insurance import load_insurance_defaults
from finance_engine.insurance.covers import SinkIndexCover, StockLossCover
from finance_engine.insurance.quote import default_loading, quote
from finance_engine.simulation import simulate
from models.demo import demo_portfolio_path
from models.parameters import load_parameters
from models.portfolio import load_portfolio

__all__ = ["published_rates", "model_rates", "rate_comparison"]


def published_rates() -> pd.DataFrame:
    """Published rates on sum insured (kind, label, rate, source, confidence)."""
    raw = load_insurance_defaults().raw.get("published_rates", {})
    return pd.DataFrame([{"case": k, "kind": v["kind"], "label": v["label"], "rate": float(v["rate"]["value"]),
                          "source": v["rate"]["source"], "confidence": v["rate"]["confidence"]}
                         for k, v in raw.items()])


def model_rates(paths: int = 4000, seed: int = 2026, price_cny_per_tco2e: float = 60.0) -> pd.DataFrame:
    """Pure and gross rates on sum insured of the model covers on the shipped demo portfolio."""
    params = load_parameters("lishui")
    pf = load_portfolio(str(demo_portfolio_path()), params)
    run = simulate(pf, params, years=1, paths=paths, seed=seed, levels=("portfolio",),
                   loss_table_level="portfolio", chunk_paths=512, scenario="insurance rates benchmark")
    covers = {
        "stock-loss, all perils, whole stock at the agreed price": StockLossCover(price_cny_per_tco2e),
        "stock-loss, fire + pine wilt + typhoon (no ice storm, drought)":
            StockLossCover(price_cny_per_tco2e, perils=("fire", "pine_wilt", "typhoon")),
        "sink index, trigger 100 % of expected sink": SinkIndexCover(price_cny_per_tco2e, 1.0),
        "sink index, trigger 80 %": SinkIndexCover(price_cny_per_tco2e, 0.8),
        "sink index, trigger 80 %, index error CV 10 %": SinkIndexCover(price_cny_per_tco2e, 0.8, error="normal",
                                                                        error_cv=0.10),
        "sink index, trigger 50 %": SinkIndexCover(price_cny_per_tco2e, 0.5),
    }
    rows = []
    for label, cov in covers.items():
        q = quote(cov, pf, params, simulation=run, account_level=None)
        w = quote(cov, pf, params, simulation=run, account_level=None, loading=default_loading("wang", 0.3))
        p = q.premium
        rows.append({"case": label, "kind": "model " + cov.kind, "pure_rate": p["pure_rate"],
                     "pure_rate_se": p["pure_rate_mc_se"],  # of the ratio where the sum insured is estimated too
                     "gross_rate_coc": p["rate_on_sum_insured"], "gross_rate_wang": w.premium["rate_on_sum_insured"],
                     "prob_payout": q.risk["prob_payout"], "sum_insured_per_mu_cny": q.exposure["sum_insured_per_mu_cny"]})
    return pd.DataFrame(rows)


def rate_comparison(paths: int = 4000, seed: int = 2026) -> pd.DataFrame:
    """Model rows and published rows in one table (``rate`` = gross rate for published policies)."""
    m = model_rates(paths, seed)
    pub = published_rates().rename(columns={"rate": "published_rate"})
    return pd.concat([m, pub[["case", "kind", "label", "published_rate"]]], ignore_index=True)


def _pct(v, digits: int = 2) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.{digits}f} %"


def to_markdown(df: pd.DataFrame) -> str:
    lines = ["| Cover | Pure rate (± MC s.e.) | Gross rate, CoC on 1-in-200 TVaR | Gross rate, Wang 0.3 | P(payout) | SI per mu |",
             "|---|---|---|---|---|---|"]
    for r in df[df.kind.str.startswith("model")].itertuples():
        lines.append(f"| {r.case} | {_pct(r.pure_rate)} ± {_pct(r.pure_rate_se, 3)} | {_pct(r.gross_rate_coc)} | "
                     f"{_pct(r.gross_rate_wang)} | {_pct(r.prob_payout)} | {r.sum_insured_per_mu_cny:,.1f} CNY |")
    lines += ["", "| Published policy | Kind | Rate on SI |", "|---|---|---|"]
    for r in df[~df.kind.str.startswith("model")].itertuples():
        lines.append(f"| {r.label} | {r.kind} | {_pct(r.published_rate)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args(argv)
    df = rate_comparison(a.paths, a.seed)
    if a.markdown:
        print(to_markdown(df))
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(df)


if __name__ == "__main__":
    main()
