"""The thin layer between the finance routes and finance_engine: requests -> engine calls, results and
their audit, jobs, reports.

A finance request is turned into a plain JSON dict (the *engine request*: everything that defines the
numbers, seed included), checked against the caller's tenant and role limits, then either run at once
in the compute pool (:mod:`api.compute`) or queued as a job. Results are stored once in
``finance_results`` with their provenance; rendered reports in ``result_artifacts``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import queue
import time
from collections.abc import Iterable
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.compute import (InlineScenarioError, ScenarioNameError, pf_ref, task_accounts, task_collateral, task_quote,
                         task_stress)
from api.db.models import FinanceResult, Instrument, Job, PortfolioRow, ResultArtifact, utcnow
from api.problems import ApiProblem, FieldMap, engine_problem
from api.security import Principal
from api.services import (audit, audit_record, get_owned, internal_job_problem, job_problem, new_id, own_provenance,
                          sha256_json)
from finance_engine.loan_terms import CREDITING_TERMS, crediting_overrides

log = logging.getLogger("carbon_risk.api.finance")

KIND_PATH = {"collateral": "collateral-valuations", "quote": "quotes", "layer": "layer-pricing",
             "stress_test": "stress-tests", "accounts": "accounts"}
REPORTS = {"collateral": ["memo"], "quote": ["slip"], "layer": [], "stress_test": ["report", "workbook", "accounts"],
           "accounts": ["rows"]}
TASKS = {"collateral": task_collateral, "quote": task_quote, "stress_test": task_stress, "accounts": task_accounts}
#: the kinds whose task reports progress and can be stopped (takes ``progress`` and ``stop``), and of those
#: the kinds that run in the jobs' chunks (take ``chunk_paths``: a valuation chooses its own, few and large)
PROGRESS_KINDS = ("collateral", "accounts", "quote", "stress_test")
CHUNKED_KINDS = ("accounts", "quote", "stress_test")
#: the kinds whose job task returns ``{"result", "artifacts"}``: reports rendered from what is not stored (the
#: stress test's report, workbook and accounts; a valuation's memo, which needs its value paths)
ARTIFACT_KINDS = ("stress_test", "collateral")
ERROR_KINDS = {"collateral": "invalid-loan-terms", "quote": "invalid-cover", "stress_test": "invalid-stress-test",
               "accounts": "invalid-accounts-request"}
ATTRIBUTION_RUNS = 9  # drivers switched off in turn by finance_engine.collateral._attribution (about)
# the engine's input errors: bad terms, covers, tables, scenarios, registries (all ValueError subclasses)
INPUT_ERRORS = (ValueError, KeyError)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    from finance_engine.simulation.result import code_version as cv

    return cv()


# where the names in the engine's error messages live in each request (api.problems.FieldMap)
#: the terms a collateral request takes from a registered loan: the engine's LoanTerms name -> the loan's name
LOAN_TERMS = {"amount_cny": "amount_cny", "term_years": "term_years", "interest_rate": "rate",
              **{k: k for k in CREDITING_TERMS}}


def collateral_fields(from_loan: Iterable[str] = ()) -> FieldMap:
    """Where a collateral request has each name of the engine's errors: the one map of ``LoanTerms`` (and
    ``value_collateral``) errors to request fields, whichever path meets them (the pre-check
    :func:`check_collateral_inputs`, a run at once, a job: :func:`problem_fields`). A field of the engine's
    ``LoanTerms`` is ``body/terms/<name>``; a term in ``from_loan`` (:func:`loan_held_terms`) is the
    registered loan's, ``loan/terms/<its name there>``; a rule across fields names the field its message
    starts with."""
    from finance_engine.loan_terms import LoanTerms

    terms = {n: f"body/terms/{n}" for n in LoanTerms.model_fields}
    terms.update({n: f"loan/terms/{LOAN_TERMS[n]}" for n in from_loan})
    return FieldMap(
        {**terms, "terms": "body/terms",
         **{n: f"body/{n}" for n in ("parcel_ids", "project_id", "paths", "seed", "attribution_paths", "loan_id",
                                     "portfolio_id")}},
        patterns=((r"unknown price model", terms["price_model"]),
                  (r"unknown price scenario", terms["price_scenario"]),
                  (r"parcels not in the portfolio|parcel_ids is empty", "body/parcel_ids")))


def loan_held_terms(terms: dict[str, Any], loan: dict[str, Any] | None) -> tuple[str, ...]:
    """The engine ``terms`` (:func:`loan_engine_terms`) that are the registered loan's (``loan``: its
    registered terms): those of :data:`LOAN_TERMS` at the loan's value. A request's override that repeats
    the loan's own value counts as the loan's too: a stored request (a job's) keeps only the merged terms,
    so this is the rule every path can apply alike."""
    if not loan:
        return ()
    return tuple(n for n, name in LOAN_TERMS.items() if name in loan and terms.get(n) == loan[name])


COLLATERAL_FIELDS = collateral_fields()
_COVER_NAMES = ("kind", "price_cny_per_tco2e", "perils", "deductible", "limit_cny", "participation",
                "trigger_fraction", "expected_sink_tco2e", "error", "error_cv", "strike_cny_per_tco2e",
                "volume_tco2e", "price_model")
QUOTE_FIELDS = FieldMap(
    {**{n: f"body/cover/{n}" for n in _COVER_NAMES}, "cover": "body/cover", "loading": "body/loading",
     **{n: f"body/loading/{n}" for n in ("method", "parameter", "expense_ratio", "profit_ratio", "fixed_costs_cny")},
     "layers": "body/layers", "cession": "body/quota_share",
     **{n: f"body/{n}" for n in ("subsidy", "subsidised", "quota_share", "account_level", "paths", "years", "seed",
                                 "policy_id", "portfolio_id")}},
    patterns=((r"unknown subsidy", "body/subsidy"), (r"unknown price model", "body/cover/price_model"),
              (r"unknown cover kind", "body/cover/kind"), (r"peril", "body/cover/perils")))
LAYER_NAMES = ("attachment_cny", "limit_cny", "basis", "reinstatements", "reinstatement_pct", "share")
STRESS_FIELDS = FieldMap(
    {n: f"body/{n}" for n in ("scenarios", "inline_scenarios", "registry", "years", "paths", "seed", "levels",
                              "accounts", "footprints", "portfolio_id")},
    patterns=((r"unknown scenario", "body/scenarios"),))


def layer_pricing_fields(default: str) -> FieldMap:
    """Layer pricing: the terms are top-level fields; table problems belong to ``default`` (file or rows)."""
    return FieldMap({**{n: f"body/{n}" for n in ("n_years", "attachment", "limit", "basis", "reinstatements",
                                                 "reinstatement_pct", "share", "aggregate_deductible",
                                                 "aggregate_limit")},
                     "file": "body/file", "rows": "body/rows", "elt": default}, default=default)


ACCOUNTS_FIELDS = FieldMap({n: f"body/{n}" for n in ("portfolio_id", "paths", "seed")})
PROBLEM_FIELDS = {"collateral": COLLATERAL_FIELDS, "quote": QUOTE_FIELDS, "stress_test": STRESS_FIELDS,
                  "accounts": ACCOUNTS_FIELDS}


def problem_fields(s: Session, tenant_id: str, kind: str, req: dict[str, Any]) -> FieldMap:
    """Where a stored engine request (a run at once, a job) has the names of the engine's errors: the
    kind's :data:`PROBLEM_FIELDS`, with a registered loan's terms at ``loan/terms/...`` as the pre-check
    names them (:func:`loan_held_terms`)."""
    if kind == "collateral" and req.get("loan_id"):
        loan = s.get(Instrument, req["loan_id"])
        if loan is not None and loan.tenant_id == tenant_id:
            return collateral_fields(loan_held_terms(req.get("terms") or {}, loan.terms))
    return PROBLEM_FIELDS[kind]


def problem_from(exc: Exception, kind: str, fields: FieldMap) -> ApiProblem:
    """A 422 problem from an engine input error; ``errors`` name the request fields the message names."""
    return engine_problem(exc, kind, fields)


def check_limit(settings, who: Principal, cells: int, what: str) -> None:
    limit = settings.role_max_cells.get(who.role, 0)
    if cells > limit:
        raise ApiProblem(422, f"{what} = {cells} parcel-path-years exceeds the {who.role} limit of {limit}",
                         kind="limit-exceeded", limit=limit, cells=cells)


def _parcel_ids_of(pf: PortfolioRow) -> list[str]:
    return pd.read_parquet(io.BytesIO(pf.data_parquet), columns=["parcel_id"])["parcel_id"].astype(str).tolist()


def _instrument(s: Session, who: Principal, id_: str, kind: str) -> Instrument:
    row = get_owned(s, Instrument, id_, who, kind)
    if row.kind != kind:
        raise ApiProblem(404, f"no {kind} {id_!r}", kind="not-found")
    return row


def _portfolio_for(s: Session, who: Principal, portfolio_id: str | None, inst: Instrument | None) -> PortfolioRow:
    if inst is not None:
        if portfolio_id is not None and portfolio_id != inst.portfolio_id:
            raise ApiProblem(422, f"{inst.kind} {inst.id} is registered against portfolio {inst.portfolio_id}, "
                                  f"not {portfolio_id}", kind="validation-error",
                             errors=[{"field": "body/portfolio_id", "reason": "not the instrument's portfolio"}])
        portfolio_id = inst.portfolio_id
    return get_owned(s, PortfolioRow, portfolio_id, who, "portfolio")


# ---- collateral -------------------------------------------------------------------------------------
def loan_engine_terms(loan: dict[str, Any] | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """Engine ``LoanTerms`` fields from a registered loan's terms and the request's overrides.

    The registry keeps ``rate`` (-> ``interest_rate``) and ``term_years`` (the engine values whole years)."""
    t: dict[str, Any] = {}
    if loan is not None:
        term = float(loan["term_years"])
        if term != int(term):
            raise ApiProblem(422, f"the loan's term_years={term} is not a whole number of years; the valuation runs "
                                  "in whole years (override it in terms.term_years)", kind="invalid-loan-terms",
                             errors=[{"field": "loan/terms/term_years", "reason": "not a whole number of years"}])
        t.update(amount_cny=float(loan["amount_cny"]), term_years=int(term), interest_rate=float(loan["rate"]))
        # the pledged project's crediting start and period, where the loan was registered with them
        t.update({k: int(v) for k, v in crediting_overrides(loan).items()})
    t.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(t.get("insurance"), dict):
        t["insurance"] = {k: v for k, v in t["insurance"].items() if v is not None}
    missing = [k for k in ("amount_cny", "term_years", "interest_rate") if k not in t]
    if missing:
        raise ApiProblem(422, f"terms need {', '.join(missing)} (or a registered loan_id)", kind="invalid-loan-terms",
                         errors=[{"field": f"body/terms/{k}", "reason": "required without a loan_id"} for k in missing])
    return t


def check_collateral_inputs(pf: PortfolioRow, terms: dict[str, Any], loan: dict[str, Any] | None, parcel_ids,
                            project_id, params=None) -> int:
    """What the engine would refuse, checked before any work (so a job is never accepted to fail):
    the engine's ``LoanTerms`` (bounds, term within the crediting horizon, LTV trigger at least the
    pledge rate), the price model and scenario, the crediting start and period against the crediting rules of
    ``params`` (the portfolio's parameter set, when given), and the pledged parcels. 422 ``invalid-loan-terms``;
    returns the number of parcels pledged. ``loan``: the registered loan's terms, if any. Every problem is reported
    (with the value given), each at the field :func:`collateral_fields` names for it, as the engine's own
    errors are."""
    from pydantic import ValidationError

    from finance_engine.loan_terms import LoanTerms, unknown_price_names

    fields = collateral_fields(loan_held_terms(terms, loan))
    errors: list[dict[str, Any]] = []
    try:
        lt = LoanTerms.model_validate(terms)
    except ValidationError as exc:
        lt = None
        for e in exc.errors():
            # as the engine words it (finance_engine.loan_terms.check_loan_terms): "insurance.agreed_price: ...",
            # and a rule across fields "terms: ltv_trigger=0.5 is below ..." (the field its message starts with)
            loc = ".".join(str(x) for x in e.get("loc", ()))
            reason = str(e.get("msg", "invalid")).replace("Value error, ", "")
            found = fields.errors(f"{loc or 'terms'}: {reason}")
            if loc and len(found) == 1 and e.get("input") is not None and not isinstance(e["input"], (dict, list)):
                found[0]["value"] = e["input"]
            errors += found
    if lt is not None:
        errors += [{"field": fields.resolve(name), "value": getattr(lt, name), "reason": reason}
                   for name, reason in unknown_price_names(lt, _price_models())]
    if params is not None:
        from finance_engine.loan_terms import LoanTermsError, check_crediting_terms

        # the crediting start and period against the model's rules, also when another term was refused (every
        # problem is reported); a value the schema refused was reported above
        own = crediting_overrides(terms)
        if lt is None:
            own = {k: v for k, v in own.items() if isinstance(v, int) and not isinstance(v, bool)
                   and not any(e["field"].endswith("/" + k) for e in errors)}
        try:
            # as the engine words it: "<term>: <reason>"; the horizon where the terms were valid
            check_crediting_terms(own, params, horizon_years=None if lt is None else lt.crediting_horizon_years)
        except LoanTermsError as exc:
            found = fields.errors(str(exc))
            for e in found:
                name = e["field"].rsplit("/", 1)[-1]
                if own.get(name) is not None:
                    e["value"] = own[name]
            errors += found
    pledged = pf.n_parcels
    if parcel_ids is not None or project_id is not None:
        df = pd.read_parquet(io.BytesIO(pf.data_parquet), columns=["parcel_id", "project_id"])
        if parcel_ids is not None:
            known = set(df["parcel_id"].astype(str))
            unknown = [p for p in parcel_ids if str(p) not in known]
            errors += [{"field": "body/parcel_ids", "value": p, "reason": "not a parcel of the portfolio"}
                       for p in unknown[:100]]
            pledged = len(parcel_ids) or pledged
        else:
            pledged = int((df["project_id"].astype(str) == str(project_id)).sum())
            if not pledged:
                errors.append({"field": "body/project_id", "value": project_id,
                               "reason": "no parcel of the portfolio belongs to this project"})
    if errors:
        raise ApiProblem(422, "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:10])[:2000],
                         kind="invalid-loan-terms", errors=errors)
    return pledged


def _price_models():
    """The price models (``load_price_model`` keeps them, and reloads an edited file)."""
    from finance_engine.price import load_price_model

    return load_price_model()


def prepare_collateral(s: Session, who: Principal, body, settings, models=None
                       ) -> tuple[PortfolioRow, str | None, dict, int]:
    """(portfolio row, loan id, engine request, cells) of a collateral request (``models``: the service's
    :class:`~api.services.ModelRegistry`, for the portfolio's crediting rules)."""
    loan = _instrument(s, who, body.loan_id, "loan") if body.loan_id else None
    pf = _portfolio_for(s, who, body.portfolio_id, loan)
    overrides = body.terms.model_dump(mode="json") if body.terms is not None else {}
    terms = loan_engine_terms(loan.terms if loan else None, overrides)
    parcel_ids, project_id = body.parcel_ids, body.project_id
    if parcel_ids is None and project_id is None and loan is not None and loan.terms.get("parcel_ids"):
        parcel_ids = list(loan.terms["parcel_ids"])
    n = check_collateral_inputs(pf, terms, loan.terms if loan else None, parcel_ids, project_id,
                                models.get(pf.region) if models is not None else None)
    H = int(terms.get("crediting_horizon_years") or 30)
    cells = n * body.paths * H
    if body.attribution:
        cells += n * min(body.paths, body.attribution_paths or 2000) * H * ATTRIBUTION_RUNS
    req = {"portfolio_id": pf.id, "loan_id": loan.id if loan else None, "terms": terms, "parcel_ids": parcel_ids,
           "project_id": project_id, "paths": body.paths, "seed": body.seed, "attribution": body.attribution,
           "attribution_paths": body.attribution_paths, "sensitivities": body.sensitivities,
           "name": body.name or (loan.name if loan else "")}
    return pf, (loan.id if loan else None), req, cells


# ---- quotes -----------------------------------------------------------------------------------------
COVER_FIELDS = {
    "stock-loss": {"price_cny_per_tco2e", "perils", "deductible", "limit_cny", "participation"},
    "sink-index": {"price_cny_per_tco2e", "trigger_fraction", "limit_cny", "expected_sink_tco2e", "error", "error_cv",
                   "participation"},
    "price-floor": {"strike_cny_per_tco2e", "volume_tco2e", "limit_cny", "participation", "price_model"},
}


@functools.lru_cache(maxsize=1)
def default_price_cny_per_tco2e() -> float:
    from finance_engine.price import load_price_model

    return float(load_price_model().start_price_cny_per_tco2e)


def engine_cover(cover: dict[str, Any] | None, policy: dict[str, Any] | None) -> dict[str, Any]:
    """The cover dict for ``finance_engine.insurance.cover_from_dict``.

    From a registered policy: a stock-loss cover on its perils, with its deductible (CNY, annual
    aggregate) and limit (default: the sum insured); the request's ``cover`` fields override. A null
    field is "not given" (the engine's default: for ``limit_cny`` no limit, or for a sink index the value
    of the triggered sink); an unlimited sink index says ``"limit_cny": "unlimited"``, as its stored
    ``to_dict`` does, so a stored cover rebuilds to the same terms."""
    d: dict[str, Any] = {}
    if policy is not None:
        d = {"kind": "stock-loss", "perils": list(policy["perils"]),
             "deductible": {"amount": float(policy.get("deductible_cny") or 0.0), "unit": "cny", "basis": "annual"},
             "limit_cny": float(policy.get("limit_cny") or policy["sum_insured_cny"])}
    if cover is not None:
        given = {k: v for k, v in cover.items() if v is not None}
        if policy is not None and given.get("kind", "stock-loss") != "stock-loss":
            d = {}
        d.update(given)
    kind = d.get("kind", "stock-loss")
    d["kind"] = kind
    extra = sorted(set(d) - COVER_FIELDS[kind] - {"kind"})
    if extra:
        raise ApiProblem(422, f"field(s) {extra} do not apply to a {kind} cover", kind="invalid-cover",
                         errors=[{"field": f"body/cover/{k}", "reason": f"not a field of a {kind} cover"} for k in extra])
    if kind in ("stock-loss", "sink-index") and "price_cny_per_tco2e" not in d:
        d["price_cny_per_tco2e"] = default_price_cny_per_tco2e()
    if kind == "price-floor" and "strike_cny_per_tco2e" not in d:
        raise ApiProblem(422, "a price-floor cover needs strike_cny_per_tco2e", kind="invalid-cover",
                         errors=[{"field": "body/cover/strike_cny_per_tco2e", "reason": "required"}])
    if kind == "stock-loss":
        from finance_engine.insurance.covers import KNOWN_PERILS

        d.setdefault("perils", list(KNOWN_PERILS))
    if kind == "stock-loss" and isinstance(d.get("deductible"), dict):
        d["deductible"] = {k: v for k, v in d["deductible"].items() if v is not None}
    return d


def prepare_quote(s: Session, who: Principal, body) -> tuple[PortfolioRow, str | None, dict, int]:
    pol = _instrument(s, who, body.policy_id, "policy") if body.policy_id else None
    pf = _portfolio_for(s, who, body.portfolio_id, pol)
    cover = engine_cover(body.cover.model_dump(mode="json") if body.cover else None, pol.terms if pol else None)
    req = {"portfolio_id": pf.id, "policy_id": pol.id if pol else None, "cover": cover, "paths": body.paths,
           "years": body.years, "seed": body.seed,
           "loading": body.loading.model_dump(mode="json") if body.loading else None, "subsidy": body.subsidy,
           "subsidised": body.subsidised, "layers": [l.model_dump(mode="json") for l in body.layers],
           "quota_share": body.quota_share, "account_level": body.account_level,
           "name": body.name or (pol.name if pol else "")}
    # set only when given: a request without them keeps its identity
    req.update(crediting_overrides({k: getattr(body, k) for k in CREDITING_TERMS}))
    if pol is not None and pol.terms.get("parcel_ids"):
        raise ApiProblem(422, "the policy insures a subset of the portfolio's parcels; quotes price whole portfolios "
                              "(upload the insured parcels as their own portfolio)", kind="invalid-cover",
                         errors=[{"field": "policy/terms/parcel_ids", "reason": "subsets are not quoted"}])
    return pf, (pol.id if pol else None), req, pf.n_parcels * body.paths * body.years


def check_quote_inputs(req: dict[str, Any], params=None) -> None:
    """Build the typed cover, loading, layers and subsidy now, and check the crediting start and period against
    the crediting rules of ``params`` (the portfolio's model, when given), so bad terms are a 422 before any
    work (a job is never accepted to fail on them); each problem names its field."""
    from api.compute import layer_from, loading_from
    from finance_engine.insurance import cover_from_dict
    from finance_engine.insurance.subsidy import subsidy_shares

    def attempt(fn, fields: FieldMap):
        try:
            return fn()
        except INPUT_ERRORS + (TypeError,) as exc:
            raise problem_from(exc, "invalid-cover", fields) from exc

    cover = req["cover"]
    attempt(lambda: cover_from_dict(cover), QUOTE_FIELDS)
    if cover.get("price_model") is not None:
        attempt(lambda: _price_models().model(cover["price_model"]), FieldMap({}, "body/cover/price_model"))
    ld = req.get("loading")
    if ld is not None:
        attempt(lambda: loading_from(ld),
                FieldMap({"loading": "body/loading", **{n: f"body/loading/{n}" for n in (
                    "method", "parameter", "expense_ratio", "profit_ratio", "fixed_costs_cny", "rho", "lambda")}},
                    "body/loading"))
    for i, l in enumerate(req.get("layers") or []):
        attempt(lambda l=l: layer_from(l),
                FieldMap({"layer": f"body/layers/{i}", **{n: f"body/layers/{i}/{n}" for n in LAYER_NAMES}},
                         f"body/layers/{i}"))
    if req.get("subsidy") is not None:
        attempt(lambda: subsidy_shares(req["subsidy"]), FieldMap({}, "body/subsidy"))
    own = crediting_overrides(req)
    if own and not (cover.get("kind") == "price-floor" and cover.get("volume_tco2e") is None):
        what = ("a price floor on a fixed volume_tco2e pays on the price alone" if cover.get("kind") == "price-floor"
                else f"a {cover.get('kind')} cover pays on the stock and the sink")
        raise ApiProblem(422, f"{', '.join(own)}: the crediting rules apply to a price floor on the simulated credits "
                              f"only; {what}", kind="invalid-cover",
                         errors=[{"field": f"body/{k}", "value": v, "reason": f"not used by this cover: {what}"}
                                 for k, v in own.items()])
    if own and params is not None:
        from finance_engine.loan_terms import LoanTermsError, check_crediting_terms

        try:
            check_crediting_terms(own, params)
        except LoanTermsError as exc:
            name = str(exc).split(":", 1)[0]
            raise ApiProblem(422, str(exc), kind="invalid-cover",
                             errors=[{"field": f"body/{name}", "value": own.get(name),
                                      "reason": str(exc).split(":", 1)[-1].strip()}]) from None



# ---- stress -----------------------------------------------------------------------------------------
def registered_loans_registry(s: Session, who: Principal, pf: PortfolioRow) -> tuple[list[dict], list[str]]:
    """The loans registered against ``pf`` as engine registry entries (and notes on what was skipped)."""
    rows = s.scalars(select(Instrument).where(Instrument.tenant_id == who.tenant_id, Instrument.kind == "loan",
                                              Instrument.portfolio_id == pf.id).order_by(Instrument.created_at)).all()
    loans, notes = [], []
    all_ids = None
    for r in rows:
        term = float(r.terms["term_years"])
        if term != int(term):
            notes.append(f"loan {r.id} skipped: term_years={term} is not a whole number of years")
            continue
        ids = r.terms.get("parcel_ids")
        if not ids:
            all_ids = all_ids or _parcel_ids_of(pf)
            ids = all_ids
        # the pledged project's own crediting start and period: its credits from its stock under them
        # (finance_engine.stress.run.loan_crediting_rules)
        own = {k: int(v) for k, v in crediting_overrides(r.terms).items()}
        loans.append({"id": r.id, "parcel_ids": list(ids),
                      "terms": {"amount_cny": float(r.terms["amount_cny"]), "term_years": int(term),
                                "interest_rate": float(r.terms["rate"]), **own}})
    return loans, notes


def prepare_stress(s: Session, who: Principal, body, models=None, portfolios=None) -> tuple[PortfolioRow, dict, int]:
    """(portfolio row, engine request, cells) of a stress request; with the service's ``models`` and ``portfolios``
    (:class:`~api.services.ModelRegistry`, :class:`~api.services.PortfolioCache`) also what the stress test refuses
    before its first run: per-path values of its levels beyond its budget (:func:`check_stress_per_path`)."""
    from api.compute import stress_inputs

    pf = get_owned(s, PortfolioRow, body.portfolio_id, who, "portfolio")
    registry = dict(body.registry) if body.registry else None
    notes: list[str] = []
    n_own = len((registry or {}).get("loans") or [])  # the body's own loans; registered ones follow them
    if body.use_registered_loans:
        loans, notes = registered_loans_registry(s, who, pf)
        if loans:
            registry = registry or {}
            registry["loans"] = list(registry.get("loans") or []) + loans
    req = {"portfolio_id": pf.id, "scenarios": list(body.scenarios), "inline_scenarios": list(body.inline_scenarios),
           "years": body.years, "paths": body.paths, "seed": body.seed, "levels": list(body.levels),
           "registry": registry, "accounts": body.accounts, "footprints": body.footprints, "name": body.name,
           "api_notes": notes}
    try:
        scns, reg = stress_inputs(req)
        if reg is not None:
            df = pd.read_parquet(io.BytesIO(pf.data_parquet), columns=["parcel_id", "project_id"])
            known, projects = set(df.parcel_id.astype(str)), set(df.project_id.astype(str))
            for kind, items in (("loans", reg.loans), ("policies", reg.policies)):
                for i, it in enumerate(items):
                    bad = [p for p in (it.parcel_ids or []) if p not in known]
                    if bad or (it.project_id is not None and it.project_id not in projects):
                        why = (f"parcels not in the portfolio: {bad[:10]}" if bad
                               else f"project {it.project_id!r} has no parcels")
                        if kind == "loans" and i >= n_own:  # a registered loan: not in the body, named by its resource
                            raise ApiProblem(422, f"registered loan {it.id} (/v1/loans/{it.id}): {why}",
                                             kind="invalid-stress-test",
                                             errors=[{"field": f"loan/{it.id}/parcel_ids", "reason": why}])
                        raise ValueError(f"registry.{kind}.{i}: {why}")
    except (InlineScenarioError, ScenarioNameError) as exc:
        raise problem_from(exc, "invalid-scenario", STRESS_FIELDS) from exc
    except INPUT_ERRORS as exc:
        raise problem_from(exc, "invalid-stress-test", STRESS_FIELDS) from exc
    from finance_engine.stress.run import stress_horizon

    horizon = stress_horizon(body.years, reg)
    if models is not None and reg is not None:
        from finance_engine.stress.registry import RegistryError, check_loan_crediting

        params = models.get(pf.region)
        for i, ln in enumerate(reg.loans):  # a loan's own crediting start and period, as the run will check them
            if i < n_own:  # the body's own loan: named at its place in the body
                try:
                    check_loan_crediting(f"registry.loans.{i}.terms", ln.terms, params)
                except RegistryError as exc:
                    raise ApiProblem(422, f"loan {ln.id}: {exc}", kind="invalid-stress-test",
                                     errors=[{"field": f"body/registry/loans/{i}/terms", "reason": str(exc)}]) from None
                continue
            try:  # a registered loan (use_registered_loans): not in the body, named by its resource and term
                check_loan_crediting("terms", ln.terms, params)
            except RegistryError as exc:
                name, _, reason = str(exc).removeprefix("terms.").partition(":")
                held = LOAN_TERMS.get(name, name)
                raise ApiProblem(422, f"registered loan {ln.id} (/v1/loans/{ln.id}): terms.{held}: {reason.strip()}",
                                 kind="invalid-stress-test",
                                 errors=[{"field": f"loan/{ln.id}/terms/{held}", "value": getattr(ln.terms, name, None),
                                          "reason": reason.strip()}]) from None
    if models is not None and portfolios is not None:
        check_stress_per_path(pf, body, reg, horizon, models, portfolios)
    runs = 1 + len({sc.sha256 for sc in scns})
    cells = pf.n_parcels * body.paths * horizon * runs * (2 if body.accounts else 1)
    return pf, req, cells


def check_stress_per_path(pf: PortfolioRow, body, reg, horizon: int, models, portfolios) -> None:
    """422 ``invalid-stress-test`` at ``body/paths`` before a job is accepted, where the stress test would refuse
    its run at once: every path of its levels (and ``project_id`` with loans or policies) for the baseline and a
    scenario held together, beyond ``STRESS_PER_PATH_BUDGET_MIB`` (``require_per_path``)."""
    from finance_engine.simulation.engine import require_per_path
    from finance_engine.stress.run import STRESS_PER_PATH_BUDGET_MIB

    params = models.get(pf.region)
    extra = ("project_id",) if reg is not None and (reg.loans or reg.policies) else ()
    try:
        require_per_path(portfolios.get(pf, params), params, ("portfolio", *body.levels, *extra), horizon, body.paths,
                         per_path_budget_mib=STRESS_PER_PATH_BUDGET_MIB, runs=2, what="the stress test")
    except ValueError as exc:
        raise ApiProblem(422, str(exc), kind="invalid-stress-test",
                         errors=[{"field": "body/paths", "value": body.paths, "reason": str(exc)}]) from None


def prepare_accounts(s: Session, who: Principal, body, settings) -> tuple[PortfolioRow, None, dict, int]:
    """Five-level accounts of a stored portfolio as a stored result: ``(portfolio, None, engine request, cells)``,
    cells being parcels x sink paths (a one-year run)."""
    pf = get_owned(s, PortfolioRow, body.portfolio_id, who, "portfolio")
    paths = body.paths or settings.accounts_default_paths
    req = {"portfolio_id": pf.id, "paths": paths, "seed": body.seed}
    return pf, None, req, pf.n_parcels * paths


# ---- storage ----------------------------------------------------------------------------------------
def store_result(s: Session, *, kind: str, tenant_id: str, key_id: str, pf: PortfolioRow | None,
                 instrument_id: str | None, req: dict[str, Any], result: dict[str, Any], job_id: str | None,
                 request_id: str) -> FinanceResult:
    if pf is not None:  # the caller's portfolio name (a result from the cross-tenant cache names the first asker's)
        result = own_provenance(result, pf)
    prov = result.get("provenance") or {}
    from models import MODEL_VERSION

    row = FinanceResult(
        id=new_id({"collateral": "cv", "quote": "qt", "layer": "lp", "stress_test": "st", "accounts": "ac"}[kind]),
        tenant_id=tenant_id, kind=kind, portfolio_id=pf.id if pf is not None else None, instrument_id=instrument_id,
        job_id=job_id, request=req, request_sha256=sha256_json(req),
        model_version=str(prov.get("model_version") or MODEL_VERSION),
        code_version=str(prov.get("code_version") or code_version()),
        region=prov.get("region") or (pf.region if pf is not None else None),
        parameter_sha256=prov.get("parameter_sha256") or (pf.parameter_sha256 if pf is not None else None),
        portfolio_sha256=pf.data_sha256 if pf is not None else None,
        seed=int(prov["seed"]) if prov.get("seed") is not None else req.get("seed"),
        result=result, created_by=key_id, request_id=request_id, created_at=utcnow())
    s.add(row)
    s.flush()
    return row


def put_artifact(s: Session, result_id: str, name: str, media_type: str, content: bytes) -> None:
    """Keep a rendered report of a result, unless one is kept already: the first writer wins (another server
    process rendering the same report at the same moment stores it first; its copy is as good)."""
    if s.get(ResultArtifact, (result_id, name)) is None:
        try:
            with s.begin_nested():  # a savepoint: losing the race leaves the rest of the transaction intact
                s.add(ResultArtifact(result_id=result_id, name=name, media_type=media_type, content=content,
                                     created_at=utcnow()))
        except IntegrityError:
            taken = s.scalar(select(ResultArtifact.name).where(ResultArtifact.result_id == result_id,
                                                               ResultArtifact.name == name))
            if taken is None:  # not the race (e.g. the result was deleted meanwhile): an error, not a success
                raise
            log.info("report %s of %s was stored by another writer first", name, result_id)


STRESS_BIG_TABLES = ("by_year", "horizon")


def result_out(row: FinanceResult, full: bool = False) -> dict[str, Any]:
    res = row.result
    if row.kind == "stress_test" and not full:
        res = {k: v for k, v in res.items() if k not in STRESS_BIG_TABLES}
        res["tables"] = {k: len(row.result.get(k) or []) for k in ("by_year", "horizon", "scenarios", "portfolio",
                                                                  "concentration", "loans", "policies", "insurer",
                                                                  "budget", "footprints") if k in row.result}
    elif row.kind == "accounts" and not full:  # the rows are paged from /rows
        res = {k: v for k, v in res.items() if k != "rows"}
        res["tables"] = {"rows": len(row.result.get("rows") or [])}
    base = f"/v1/{KIND_PATH[row.kind]}/{row.id}"
    return {"id": row.id, "kind": row.kind, "portfolio_id": row.portfolio_id, "instrument_id": row.instrument_id,
            "job_id": row.job_id,
            "audit": {"request": row.request, "request_sha256": row.request_sha256,
                      "model_version": row.model_version, "code_version": row.code_version, "region": row.region,
                      "parameter_sha256": row.parameter_sha256, "portfolio_sha256": row.portfolio_sha256,
                      "seed": row.seed, "created_by": row.created_by, "request_id": row.request_id,
                      "created_at": row.created_at},
            "result": res, "reports": [f"{base}/{r}" for r in REPORTS[row.kind]]}


# ---- jobs -------------------------------------------------------------------------------------------
class TaskProgressReceiver:
    """The job thread's end of a finance task's progress (:func:`api.compute.progress_sink`): takes the
    task's ``(fraction, eta_s, message)`` items and writes them with the simulation jobs' writer
    (:class:`api.jobs.ProgressWriter`): the latest fraction, ETA and message at most every
    ``PROGRESS_WRITE_INTERVAL_S``, notes (``fraction`` None) with the next write, which they force.

    :meth:`drain` empties a worker's queue (polled by the job thread); when the task runs in this
    thread (``CRE_COMPUTE_WORKERS=0``) the receiver itself is the task's channel (:meth:`put`)."""

    def __init__(self, db, job_id: str):
        from api.jobs import ProgressWriter

        self.write = ProgressWriter(db, job_id)
        self.latest: tuple | None = None
        self.notes: list[str] = []
        self.failed = False

    def take(self, item: tuple) -> None:
        fraction, eta_s, message = item
        if fraction is None:
            if message:
                self.notes.append(message)
        elif self.latest is None or fraction >= self.latest[0]:  # never backwards
            self.latest = (fraction, eta_s, message)

    def put(self, item: tuple) -> None:
        self.take(item)
        self.flush()

    def drain(self, q) -> None:
        """Take every item waiting on the queue proxy ``q`` and write; a queue that fails is given up."""
        if q is None or self.failed:
            return
        try:
            while True:
                self.take(q.get_nowait())
        except queue.Empty:
            pass
        except Exception:  # noqa: BLE001 - progress is observation only: the job goes on without it
            self.failed = True
            log.warning("job %s: its progress queue failed; no more progress is written", self.write.job_id,
                        exc_info=True)
        self.flush()

    def flush(self, force: bool = False) -> None:
        if self.latest is None and not self.notes:
            return
        fraction, eta_s, message = self.latest or (None, None, None)
        done = fraction is not None and fraction >= 1.0
        if self.write(fraction, eta_s, message, force=force or done or bool(self.notes), notes=self.notes):
            self.latest, self.notes = None, []


def run_finance_job(runner, job: Job, ev, append) -> None:
    """Run a finance job in the compute pool; the job thread waits, polling for a cancel and writing
    the task's progress (accounts, quote and stress_test tasks report it; :class:`TaskProgressReceiver`).

    A cancel marks the job cancelled at once and sets the task's cancel flag (:meth:`ComputePool.stop_flag`),
    on which the task stops at its engine's next chunk, freeing its worker (a task whose flag could not be
    made runs to its end; its result is discarded either way)."""
    from finance_engine.simulation import SimulationCancelled

    t0 = time.perf_counter()
    req = job.request
    q = receiver = stop = None
    try:
        with runner.db.session() as s:
            pf = s.get(PortfolioRow, req["portfolio_id"])
            if pf is None or pf.tenant_id != job.tenant_id:
                raise ApiProblem(404, f"portfolio {req['portfolio_id']!r} no longer exists", kind="not-found")
        task = TASKS[job.kind]
        if job.kind in PROGRESS_KINDS:
            receiver = TaskProgressReceiver(runner.db, job.id)
            q = runner.compute.progress_queue()  # None: the task runs in this thread, or without progress
            in_process = runner.compute.workers <= 0
            channel = q if q is not None else (receiver if in_process else None)
            stop = ev if in_process else runner.compute.stop_flag()
            kw = {"chunk_paths": runner.settings.job_chunk_paths} if job.kind in CHUNKED_KINDS else {}
            if job.kind == "collateral":
                kw["memo"] = True
            task = functools.partial(task, progress=channel, stop=stop, **kw)
        fut = runner.compute.submit(task, pf_ref(pf), req)
        last_poll = 0.0
        while True:
            try:
                out = fut.result(timeout=0.25)
                break
            except TimeoutError:
                pass
            if receiver is not None:
                receiver.drain(q)
            if ev.is_set() or runner._stopping.is_set():
                fut.cancel()
                if stop is not None and stop is not ev:
                    with contextlib.suppress(Exception):  # the manager gone: the task runs to its end
                        stop.set()
                runner._finish_cancelled(job.id)
                return
            if time.perf_counter() - last_poll > 0.5:
                last_poll = time.perf_counter()
                with runner.db.session() as s:
                    if s.scalar(select(Job.cancel_requested).where(Job.id == job.id)):
                        ev.set()
    except ApiProblem as exc:  # a check of the request failed (e.g. the data changed since it was accepted)
        runner._fail(job.id, job_problem(exc.kind, exc.detail or exc.title, exc.status, exc.title, errors=exc.errors))
        return
    except SimulationCancelled:  # the task saw its cancel flag (in-process, where this thread ran it)
        runner._finish_cancelled(job.id)
        return
    except INPUT_ERRORS as exc:
        with runner.db.session() as s:
            fields = problem_fields(s, job.tenant_id, job.kind, req)
        p = problem_from(exc, ERROR_KINDS.get(job.kind, "invalid-request"), fields)
        runner._fail(job.id, job_problem(p.kind, p.detail, 422, "Invalid request", errors=p.errors))
        return
    except Exception as exc:  # noqa: BLE001
        log.exception("job %s failed", job.id)
        runner._fail(job.id, internal_job_problem(job.id))  # the traceback is in the log, not in the answer
        return
    if receiver is not None:  # the task's last reports (they were queued before its result came back)
        receiver.drain(q)
        receiver.flush(force=True)
    q = None  # drop the proxy: its queue in the manager goes with it
    artifacts = {}
    if job.kind in ARTIFACT_KINDS:
        artifacts = out["artifacts"]
        out = out["result"]
    if job.kind == "stress_test" and req.get("api_notes"):
        out["notes"] = list(out.get("notes") or []) + list(req["api_notes"])
    from api.jobs import mark_succeeded, save_job_result

    def save(s) -> None:  # the result, its reports, its audit record and the job's success in one transaction
        row = store_result(s, kind=job.kind, tenant_id=job.tenant_id, key_id=job.created_by, pf=pf,
                           instrument_id=req.get("loan_id") or req.get("policy_id"), req=req, result=out,
                           job_id=job.id, request_id=job.request_id)
        for name, (media, content) in artifacts.items():
            put_artifact(s, row.id, name, media, content)
        audit_record(s, job.tenant_id, job.created_by, f"{job.kind}.create", job.kind, row.id, job_id=job.id,
                     request_sha256=row.request_sha256, parameter_sha256=row.parameter_sha256, seed=row.seed,
                     code_version=row.code_version)
        mark_succeeded(s, job.id, row.id, f"succeeded in {time.perf_counter() - t0:.1f} s: result {row.id}")

    save_job_result(runner.db, job.id, save, runner._fail)


__all__ = ["ARTIFACT_KINDS", "COLLATERAL_FIELDS", "ERROR_KINDS", "KIND_PATH", "LOAN_TERMS", "PROBLEM_FIELDS", "QUOTE_FIELDS", "REPORTS",
           "CHUNKED_KINDS", "PROGRESS_KINDS", "STRESS_FIELDS", "TASKS", "TaskProgressReceiver", "check_collateral_inputs", "check_limit",
           "collateral_fields",
           "layer_pricing_fields", "loan_held_terms", "problem_fields",
           "check_quote_inputs", "code_version", "engine_cover",
           "loan_engine_terms", "prepare_accounts", "prepare_collateral", "prepare_quote", "prepare_stress", "problem_from",
           "put_artifact", "result_out", "run_finance_job", "store_result"]
