"""Compiled pass over a loan's regression replicates (Numba).

:func:`replicate_credit_sums` reads each delete-a-group replicate's values at the end of every year of
the term once and accumulates what the credit figures of ``finance_engine.collateral`` need (counts
and sums over the replicate's kept paths). In numpy the same figures took some ten temporaries of
replicates x years x paths and a dozen passes over them.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def replicate_credit_sums(values, groups, balance, ltv_trigger, pledge_rate, recovery_factor, mortgage, guarantee,
                          cum_payout, beta, practice_loan, by_year, by_replicate, ratio, cash):
    """Counts and sums of the credit view of each replicate over the paths outside its group.

    The arithmetic of ``finance_engine.collateral._credit_view`` (``_carried_balances``,
    ``_forced_sale_shortfall``), in the same order.

    Parameters
    ----------
    values : float32 (K, T + 1, N)
        Replicate ``k``'s collateral value (CNY) at the end of year ``t`` (row 0 is today).
    groups : int64 (N,)
        Each path's group; replicate ``k`` keeps the paths with ``groups != k``.
    balance : float64 (T + 1,)
        Scheduled balance at the end of years 0..T (``balance[t]`` is outstanding during year ``t + 1``,
        ``balance[t + 1]`` is left after its instalment), CNY.
    ltv_trigger, pledge_rate : float
        A top-up is called at the end of year ``t + 1`` where the path's balance left after that day's
        instalment ``A > ltv_trigger * value`` (or the value is 0 with a balance left), of
        ``A - pledge_rate * value``; a met call is a prepayment: the path's later scheduled balances are
        scaled by ``(A - call) / A``.
    recovery_factor : float64 (N,)
        What a forced sale recovers per CNY of value still to be sold, per path.
    mortgage, guarantee : float
        The forest-right mortgage and the guarantee, CNY: a forced sale recovers
        ``cash + (value - cash) * recovery_factor + mortgage + guarantee`` (added in that order).
    cum_payout : float64 (T, N) or (0, 0)
        An assigned policy's payouts received by year ``t + 1``, capped at the balance (empty: none).
    beta : float64 (T,)
        Balance per CNY of principal during year ``t + 1``.
    practice_loan : float64 (K,)
        The practice loan (pledge rate times today's value) under replicate ``k``.
    by_year : float64 (3, K, T), out
        Paths with the value below the balance, paths with a call, the calls' sizes (CNY).
    by_replicate : float64 (7, K), out
        Paths ever below the balance, paths with any call, calls, the calls' sizes (CNY), the
        shortfalls on a forced sale (CNY), paths whose largest loan is below the practice loan, the
        paths' balances summed over the term (CNY, the simulated LGD's denominator).
    ratio : float64 (K, N), out
        Each path's smallest value-to-principal ratio over the term (the largest loan it carries);
        ``inf`` on the paths of the replicate's own group.
    cash : float64 (T, N) or (0, 0)
        The proceeds already received by the end of year ``t + 1`` (CNY; recovered at par; empty: none).
    """
    n_rep, n_t1, n_paths = values.shape
    n_years = n_t1 - 1
    has_payout = cum_payout.shape[0] > 0
    has_cash = cash.shape[0] > 0
    by_year[:] = 0.0
    by_replicate[:] = 0.0
    for k in range(n_rep):
        for n in range(n_paths):
            if groups[n] == k:
                ratio[k, n] = np.inf
                continue
            below_any = False
            calls = 0
            size_sum = 0.0
            shortfall_sum = 0.0
            balance_sum = 0.0
            smallest = np.inf
            rf = recovery_factor[n]
            scale = 1.0
            for t in range(n_years):
                v = np.float64(values[k, t + 1, n])
                bal = balance[t] * scale
                after = balance[t + 1] * scale
                balance_sum += bal
                if v < bal:
                    by_year[0, k, t] += 1.0
                    below_any = True
                if after > 0 and (v <= 0 or after > ltv_trigger * v):
                    calls += 1
                    by_year[1, k, t] += 1.0
                    size = max(after - pledge_rate * v, 0.0)
                    by_year[2, k, t] += size
                    size_sum += size
                    scale = scale * ((after - size) / after)
                if has_cash:
                    c = cash[t, n]
                    recovery = c + (v - c) * rf
                else:
                    recovery = v * rf
                recovery = recovery + mortgage + guarantee
                if has_payout:
                    recovery += cum_payout[t, n]
                shortfall_sum += max(bal - recovery, 0.0)
                if beta[t] > 0:
                    smallest = min(smallest, v / beta[t])
            ratio[k, n] = smallest
            if below_any:
                by_replicate[0, k] += 1.0
            if calls > 0:
                by_replicate[1, k] += 1.0
            by_replicate[2, k] += calls
            by_replicate[3, k] += size_sum
            by_replicate[4, k] += shortfall_sum
            if smallest < practice_loan[k]:
                by_replicate[5, k] += 1.0
            by_replicate[6, k] += balance_sum
