"""``carbon-risk demo``'s return-period lines: a loss of any of the run's years over *that year's* opening stock
(review: a late year's loss divided by today's stock, which grows 1.66x over 30 years, read 28 % of the stock)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

from api.cli.commands.demo import return_period_lines
from finance_engine.insurance import pml


def fake_run(years: int = 30, paths: int = 400, seed: int = 1, set_size: int = 4):
    """A stock growing 4 % a year with a loss each year of 0-1 % of the opening stock and, in one year of 50,
    a 20 % loss: the loss shares do not depend on the year, the tonnes grow with the stock."""
    rng = np.random.default_rng(seed)
    stock0 = 1_000_000.0
    share = rng.uniform(0.0, 0.01, (years, paths))
    share[rng.random((years, paths)) < 0.02] = 0.2
    opening = np.empty((years, paths))
    end = np.empty((years, paths))
    s = np.full(paths, stock0)
    for y in range(years):
        opening[y] = s
        end[y] = s * 1.04 - share[y] * s
        s = end[y]
    metrics = {"loss_tco2e": share * opening, "stock_tco2e": end}
    res = SimpleNamespace(paths_of=lambda m: metrics[m][..., None],
                          provenance={"switches": {"parameter_set_size": set_size}})
    return res, stock0, share, opening


def test_the_share_is_of_the_same_years_opening_stock():
    res, stock0, share, opening = fake_run()
    lines = return_period_lines(res, stock0)
    assert "the loss over the same year's opening stock" in lines[0]
    want = pml(share.T.ravel(), (10, 50, 100, 200), group_size=30 * 4)
    tonnes = pml((share * opening).T.ravel(), (10, 50, 100, 200), group_size=30 * 4)
    for line, w, t in zip(lines[1:], want.itertuples(), tonnes.itertuples()):
        got = float(re.search(r"([\d.]+)% of its year's opening stock", line).group(1))
        assert got == pytest.approx(100 * w.loss, abs=0.005)
        assert f"{t.loss:,.0f} tCO2e" in line
    # the 1-in-100 share is the 20 % loss of whichever year, not the tonnes over today's (smaller) stock
    one_in_100 = lines[3]
    assert "20.00% of its year's opening stock" in one_in_100
    q = tonnes.loc[tonnes.return_period_years == 100, "loss"].item()
    assert q / stock0 > 0.25  # what the old line printed as "% of today's stock"


def test_the_intervals_count_a_paths_correlated_years():
    res, stock0, share, _ = fake_run()
    lines = return_period_lines(res, stock0)
    iid = pml(share.T.ravel(), (10,))
    grouped = pml(share.T.ravel(), (10,), group_size=120)
    lo, hi = (float(x) for x in re.search(r"opening stock \(95% CI ([\d.]+)% - ([\d.]+)%\)", lines[1]).groups())
    assert (lo, hi) == pytest.approx((100 * grouped.ci_low.item(), 100 * grouped.ci_high.item()), abs=0.005)
    assert hi - lo >= 100 * (iid.ci_high.item() - iid.ci_low.item()) - 0.01
