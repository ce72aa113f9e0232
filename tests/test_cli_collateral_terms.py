"""``carbon-risk collateral --terms FILE`` names a key that is no loan term (with the closest known one), exit 2,
before any simulation: a misspelt ``interest_rat:`` read as a missing ``interest_rate``, and a misspelt optional
term (``borower_pd``) was not named at all."""

from __future__ import annotations

import pytest

from tests.test_cli_outputs import no_simulation, one_error_line, run  # noqa: F401  (fixture)


def _terms(tmp_path, text: str):
    p = tmp_path / "loan.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_a_misspelt_required_term_is_named_with_a_suggestion(portfolio_csv, tmp_path, capsys, no_simulation):
    terms = _terms(tmp_path, "amount_cny: 100000\nterm_years: 3\ninterest_rat: 0.04\n")
    code, _, err = run(capsys, "collateral", "-p", portfolio_csv, "--terms", terms, "--paths", "32")
    line = one_error_line(err)
    assert code == 2
    assert f"{terms}: unknown loan term 'interest_rat' (did you mean 'interest_rate'?)" in line
    assert "missing loan term" not in line


def test_every_unknown_term_is_named_and_one_far_from_any_gets_no_guess(portfolio_csv, tmp_path, capsys, no_simulation):
    terms = _terms(tmp_path, "amount_cny: 100000\nterm_years: 3\ninterest_rate: 0.04\nborower_pd: 0.02\ncolour: red\n")
    code, _, err = run(capsys, "collateral", "-p", portfolio_csv, "--terms", terms, "--paths", "32")
    line = one_error_line(err)
    assert code == 2
    assert "unknown loan terms 'borower_pd' (did you mean 'borrower_pd'?), 'colour';" in line
    assert "the terms are amount_cny, term_years, interest_rate" in line


def test_an_option_does_not_hide_an_unknown_key(portfolio_csv, tmp_path, capsys, no_simulation):
    # --rate gives the term the file misspelt: the misspelling is still refused (it was silently dropped)
    terms = _terms(tmp_path, "amount_cny: 100000\nterm_years: 3\ninterest_rat: 0.04\n")
    code, _, err = run(capsys, "collateral", "-p", portfolio_csv, "--terms", terms, "--rate", "0.05", "--paths", "32")
    assert code == 2 and "did you mean 'interest_rate'?" in one_error_line(err)


@pytest.mark.parametrize("text", ["amount_cny: 100000\nterm_years: 3\n"])
def test_a_missing_term_still_says_which_option_gives_it(text, portfolio_csv, tmp_path, capsys, no_simulation):
    terms = _terms(tmp_path, text)
    code, _, err = run(capsys, "collateral", "-p", portfolio_csv, "--terms", terms, "--paths", "32")
    assert code == 2 and "missing loan term interest_rate (give --rate or a --terms file)" in one_error_line(err)


def test_the_memo_and_the_text_say_the_drivers_run_on_fewer_paths(portfolio_csv, tmp_path, capsys):
    """The CLI's drivers run on 2,000 paths (attribution_paths) under a larger headline: the text and the memo say
    so beside the drivers' table."""
    import re

    memo = tmp_path / "memo.html"
    code, out, err = run(capsys, "collateral", "-p", portfolio_csv, "--amount", "50000", "--term", "2", "--rate", "0.04",
                         "--project", "PRJ-A", "--paths", "2048", "-o", memo)
    assert code == 0, err
    assert "on 2,000 paths, fewer than the headline's 2,048: the full model row is that run's own value" in out
    # the value's parameter sd with its 95 % interval in brackets
    line = next(ln for ln in out.splitlines() if ln.startswith("Value today"))
    assert re.search(r"parameter sd (not resolved|[\d,]+) \[[\d,]+–[\d,]+\]; 95% CI", line), line
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", memo.read_text(encoding="utf-8")))
    assert "its own engine run on 2,000 paths (attribution_paths) against the headline's 2,048" in text
