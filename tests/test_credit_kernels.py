"""The compiled pass over a loan's regression replicates (finance_engine/_credit_kernels.py) and the
figures built on it, against their numpy definitions."""

import numpy as np
import pandas as pd
import pytest

from finance_engine._credit_kernels import replicate_credit_sums


def _reference(values, groups, balance, trigger, pledge_rate, rf, mortgage, guarantee, cum_payout, beta, practice,
               cash):
    """The numpy definition: each replicate's credit view over the paths outside its group, a year at a
    time, a top-up call checked on the balance left after the year-end instalment (``balance[t + 1]``; the
    year's own figures on ``balance[t]``, outstanding during it), a met call carried forward as a prepayment
    (the path's later balances scaled by the principal left) and the cash already received recovered at
    par."""
    n_rep = values.shape[0]
    keep = groups[None, :] != np.arange(n_rep)[:, None]
    v = values[:, 1:].astype(float)
    n_years = v.shape[1]
    scale = np.ones((n_rep, v.shape[2]))
    bal = np.empty(v.shape)
    calls = np.empty(v.shape, dtype=bool)
    size = np.empty(v.shape)
    for t in range(n_years):
        bt, at = balance[t] * scale, balance[t + 1] * scale
        c = ((v[:, t] <= 0) | (at > trigger * v[:, t])) & (at > 0)
        st = np.where(c, np.maximum(at - pledge_rate * v[:, t], 0.0), 0.0)
        bal[:, t], calls[:, t], size[:, t] = bt, c, st
        scale = np.where(c, scale * ((at - st) / np.where(c, at, 1.0)), scale)
    below = v < bal
    recovery = (v * rf if not cash.size else cash + (v - cash) * rf) + mortgage + guarantee
    if cum_payout.size:
        recovery += cum_payout
    shortfall = np.maximum(bal - recovery, 0.0)
    with np.errstate(divide="ignore"):
        ratio = np.where(beta[None, :, None] > 0, v / np.where(beta > 0, beta, 1.0)[None, :, None], np.inf).min(axis=1)
    k3 = keep[:, None, :]
    by_year = np.stack([(below & k3).sum(2), (calls & k3).sum(2), (size * k3).sum(2)]).astype(float)
    n_calls = calls.sum(1)
    by_rep = np.stack([(below.any(1) & keep).sum(1), ((n_calls > 0) & keep).sum(1), (n_calls * keep).sum(1),
                       (size.sum(1) * keep).sum(1), (shortfall.sum(1) * keep).sum(1),
                       ((ratio < practice[:, None]) & keep).sum(1), (bal.sum(1) * keep).sum(1)]).astype(float)
    return by_year, by_rep, np.where(keep, ratio, np.inf)


@pytest.mark.parametrize("with_payout,with_cash", [(False, False), (True, False), (False, True), (True, True)])
def test_replicate_credit_sums_match_their_numpy_definition(with_payout, with_cash):
    rng = np.random.default_rng(5)
    n_rep, n_years, n_paths = 6, 4, 900
    values = (rng.lognormal(0.0, 0.6, (n_rep, n_years + 1, n_paths)) * 100).astype(np.float32)
    values[:, 1:][rng.random((n_rep, n_years, n_paths)) < 0.05] = 0.0  # worthless pledges call a top-up
    groups = (np.arange(n_paths) // 3) % n_rep
    balance = np.array([120.0, 90.0, 60.0, 0.0, 0.0])  # repaid at the end of year 3: no call then, nor after
    beta = np.array([1.0, 0.75, 0.5, 0.0])          # nor bounds the largest loan
    rf = rng.uniform(0.5, 0.9, n_paths)
    cum_payout = (np.minimum(np.cumsum(rng.exponential(5.0, (n_years, n_paths)), axis=0), balance[:n_years, None])
                  if with_payout else np.zeros((0, 0)))
    # the cash received: at most the smallest replicate value of the path-year (the values include it)
    cash = (values[:, 1:].min(axis=0).astype(float) * rng.uniform(0, 1, (n_years, n_paths))
            if with_cash else np.zeros((0, 0)))
    practice = values[:, 0, 0].astype(float) * 0.6
    want = _reference(values, groups, balance, 0.8, 0.6, rf, 7.0, 3.5, cum_payout, beta, practice, cash)
    by_year, by_rep, ratio = np.empty((3, n_rep, n_years)), np.empty((7, n_rep)), np.empty((n_rep, n_paths))
    replicate_credit_sums(values, groups, balance, 0.8, 0.6, rf, 7.0, 3.5, cum_payout, beta, practice, by_year,
                          by_rep, ratio, cash)
    np.testing.assert_allclose(by_year, want[0], rtol=1e-12)
    np.testing.assert_allclose(by_rep, want[1], rtol=1e-12)
    assert np.array_equal(ratio, want[2])
    assert by_year[1].sum() > 0 and by_rep[4].sum() > 0  # calls and shortfalls were exercised
    # calls are carried forward: some path's balance fell below the schedule's
    assert by_rep[6].sum() < (balance.sum() * (groups[None, :] != np.arange(n_rep)[:, None]).sum(1)).sum()
    assert by_year[1][:, 2:].sum() == 0  # no call in the year the loan is repaid, nor after


def test_the_kernel_and_the_numpy_credit_view_agree_on_a_valuations_replicates():
    """The compiled pass and the numpy credit view (_carried_balances, _forced_sale_shortfall, the
    replicate statistics _shortfall_mean and _below_any_rate) give the same figures on one replicate's
    values, cash received included."""
    import finance_engine.collateral as col
    from finance_engine.value_regression import jackknife_groups

    rng = np.random.default_rng(9)
    n, T, H = 800, 5, 12
    terms = col.LoanTerms(amount_cny=60_000, term_years=T, interest_rate=0.04, crediting_horizon_years=H,
                          amortisation="bullet", forest_right_mortgage_cny=5_000.0)
    stock = np.cumsum(rng.lognormal(0.0, 0.3, (H, n)), axis=0) * 100
    credits = np.diff(np.vstack([np.zeros(n), stock]), axis=0) * rng.uniform(0.5, 1.0, (H, n))
    prices = rng.lognormal(np.log(50), 0.4, (H + 1, n))
    money = col._money(credits, stock, prices, terms, groups=jackknife_groups(np.arange(n), 4))
    rf = rng.uniform(0.6, 0.9, n)
    beta = col.balance_schedule(terms.model_copy(update={"amount_cny": 1.0}))[:T]
    jk = col._jackknife_figures(money, terms, rf, None, beta, (0.05,))
    # the replicates' means of the numpy view's figures, and their jackknife errors
    keep = money.groups[None, :] != np.arange(money.value_replicates.shape[0])[:, None]
    below = col._below_any_rate(terms)(money.value_replicates, keep)
    from finance_engine.value_regression import jackknife_se
    assert jk["se"]["p_below_any"] == pytest.approx(float(jackknife_se(below)), rel=1e-9)
    short = col._shortfall_mean(terms, rf, None, money.received_paths)(money.value_replicates, keep)
    v = money.value_replicates[:, 1:T + 1].astype(float)
    bal, _, _ = col._carried_balances(v, terms)
    lgd = short * keep.sum(1) / (bal.sum(1) * keep).sum(1)
    assert jk["se"]["sim_lgd"] == pytest.approx(float(jackknife_se(lgd)), rel=1e-9)
    assert np.isfinite(jk["se"]["sim_lgd"]) and jk["se"]["sim_lgd"] > 0


def test_kept_quantiles_are_each_replicates_quantiles():
    """The replicates' quantiles from one partition of all of them (the left-out paths at +inf) equal
    ``numpy.quantile`` of each replicate's kept paths, with groups of unequal sizes and ties."""
    from finance_engine.collateral import _kept_quantiles

    rng = np.random.default_rng(6)
    for n_paths, ties, dtype in ((4000, False, np.float32), (4002, True, np.float32), (97, True, np.float64),
                                 (4003, False, np.float64)):
        groups = (np.arange(n_paths) // 4) % 10
        keep = groups[None, :] != np.arange(10)[:, None]
        x = (rng.integers(0, 20, (10, 3, n_paths)) if ties else rng.random((10, 3, n_paths))).astype(dtype)
        padded = np.where(keep[:, None], x, dtype(np.inf))
        for ps in ((0.01, 0.005, 0.01, 0.02, 0.05, 0.10), (0.01, 0.05, 0.5, 0.95), (0.0, 1.0, 0.999)):
            got = _kept_quantiles(padded.copy(), keep.sum(axis=1), ps)
            want = np.array([np.quantile(x[k][:, keep[k]], ps, axis=1).T for k in range(10)])
            assert np.array_equal(got, want), (n_paths, dtype, ps)  # numpy's own arithmetic, float32 too


def test_the_by_year_table_is_widened_cell_by_cell_as_defined():
    """The by-year table's widening, column at a time, is what :func:`_widen` and :func:`_at_least`
    give each cell: a NaN jackknife error leaves the cell alone, an infinite LTV keeps its interval."""
    import finance_engine.collateral as col

    rng = np.random.default_rng(7)
    T = 5
    est = np.sort(rng.uniform(100, 200, (T, 3)), axis=1)
    table = {"year": np.arange(1, T + 1)}
    for j, k in enumerate((5, 50, 95)):
        table[f"value_p{k:02d}_cny"] = est[:, j]
        table[f"value_p{k:02d}_ci95_low_cny"] = est[:, j] - rng.uniform(0, 10, T)
        table[f"value_p{k:02d}_ci95_high_cny"] = est[:, j] + rng.uniform(0, 10, T)
    ltv = rng.uniform(0.3, 0.9, T)
    ltv[2] = np.inf
    table.update({"ltv_p95": ltv, "ltv_p95_ci95_low": ltv - 0.05, "ltv_p95_ci95_high": ltv + 0.05})
    table["ltv_p95_ci95_high"][2] = np.inf
    for name in ("p_value_below_balance_mc_se", "p_top_up_call_mc_se", "expected_top_up_mc_se_cny"):
        table[name] = rng.uniform(0, 0.02, T)
    table["p_top_up_call_mc_se"][1] = np.nan
    by_year = pd.DataFrame(table)
    se = {"value_q": rng.uniform(0, 8, (T, 3)), "ltv_p95": rng.uniform(0, 0.1, T), "p_below": rng.uniform(0, 0.03, T),
          "p_call": rng.uniform(0, 0.03, T), "top_up": rng.uniform(0, 0.03, T)}
    se["value_q"][0, 0] = se["value_q"][3, 2] = np.nan
    se["ltv_p95"][4] = np.nan
    se["p_below"][2] = np.nan
    jk = {"se": se, "t": 2.26, "groups": 10}
    got = col._with_regression_error(by_year, jk)
    want = by_year.copy()
    for i in range(T):
        for j, k in enumerate((5, 50, 95)):
            lo, hi = f"value_p{k:02d}_ci95_low_cny", f"value_p{k:02d}_ci95_high_cny"
            want.loc[i, [lo, hi]] = col._widen(want.at[i, f"value_p{k:02d}_cny"], [want.at[i, lo], want.at[i, hi]],
                                               jk, "value_q", (i, j), low=0.0)
        want.loc[i, ["ltv_p95_ci95_low", "ltv_p95_ci95_high"]] = col._widen(
            want.at[i, "ltv_p95"], [want.at[i, "ltv_p95_ci95_low"], want.at[i, "ltv_p95_ci95_high"]], jk,
            "ltv_p95", (i,), low=0.0)
        for c, name in (("p_value_below_balance_mc_se", "p_below"), ("p_top_up_call_mc_se", "p_call"),
                        ("expected_top_up_mc_se_cny", "top_up")):
            want.at[i, c] = col._at_least(want.at[i, c], jk, name, (i,))
    pd.testing.assert_frame_equal(got, want)
    assert not got.equals(by_year)  # it widened something


def test_replicate_figures_do_not_depend_on_the_batch_of_replicates(monkeypatch):
    """The replicates' quantiles are taken on bounded float32 copies, a batch of replicates at a time
    (a long loan on many paths would otherwise copy all of them at once): one replicate a batch gives
    the same errors as all in one, with groups of unequal sizes too (the tail means sum each
    replicate's paths in path order, whatever the partitions did)."""
    import finance_engine.collateral as col
    from finance_engine.value_regression import jackknife_groups

    rng = np.random.default_rng(8)
    n, T, H = 1203, 4, 12  # 301 sets: groups of 31 and 30 sets, replicates keeping different numbers of paths
    terms = col.LoanTerms(amount_cny=40_000, term_years=T, interest_rate=0.04, crediting_horizon_years=H)
    stock = np.cumsum(rng.lognormal(0.0, 0.3, (H, n)), axis=0) * 100
    credits = np.diff(np.vstack([np.zeros(n), stock]), axis=0) * rng.uniform(0.5, 1.0, (H, n))
    prices = rng.lognormal(np.log(50), 0.2, (H + 1, n))
    money = col._money(credits, stock, prices, terms, groups=jackknife_groups(np.arange(n), 4))
    beta = col.balance_schedule(terms.model_copy(update={"amount_cny": 1.0}))[:T]
    rf = rng.uniform(0.6, 0.9, n)
    args = (money, terms, rf, None, beta, (0.01, 0.005, 0.05))
    whole = col._jackknife_figures(*args)
    monkeypatch.setattr(col, "REPLICATE_BATCH_VALUES", 1)
    batched = col._jackknife_figures(*args)
    assert whole["se"].keys() == batched["se"].keys()
    for name in whole["se"]:
        np.testing.assert_array_equal(whole["se"][name], batched["se"][name], err_msg=name)
    assert np.isfinite(whole["se"]["value_q"]).any() and np.isfinite(whole["se"]["es95"])


@pytest.mark.parametrize("term", [4, 12])
def test_price_cases_valued_together_are_each_valued_alone(term):
    """A valuation's volatility sensitivities share its regressions' state (``_money_cases``): each
    case's values and delete-a-group replicates are bit for bit those of ``_money`` alone, with the
    methodology change splitting the paths, pending credits, the crediting position, and a term as
    long as the horizon (its last year's values are the realised flows)."""
    import finance_engine.collateral as col
    from finance_engine.issuance import RealisedIssuance
    from finance_engine.value_regression import jackknife_groups

    rng = np.random.default_rng(9)
    n, H = 1600, 12
    terms = col.LoanTerms(amount_cny=40_000, term_years=term, interest_rate=0.04, crediting_horizon_years=H)
    stock = np.cumsum(rng.lognormal(0.0, 0.3, (H, n)), axis=0) * 100
    credits = np.diff(np.vstack([np.zeros(n), stock]), axis=0) * rng.uniform(0.5, 1.0, (H, n))
    issued = RealisedIssuance(credits, np.where(rng.random(n) < 0.4, rng.integers(1, H, n), np.inf),
                              rng.exponential(20.0, (H + 1, n)))
    position = (rng.normal(size=(H + 1, n)), 5)
    groups = jackknife_groups(np.arange(n), 4)
    cases = [rng.lognormal(np.log(50), s, (H + 1, n)) for s in (0.2, 0.1, 0.3)]
    together = col._money_cases(credits, stock, cases, terms, issued, groups, position)
    for prices, m in zip(cases, together):
        alone = col._money(credits, stock, prices, terms, issued, groups, position)
        for field in ("value_paths", "pv_total", "cash_flows", "realised_paths", "value_replicates"):
            assert np.array_equal(getattr(m, field), getattr(alone, field)), field
    assert issued.changed_by(4).sum() >= 200  # the change splits the paths into fits of their own by year 4
