"""Property-based API test: Schemathesis generates requests from the OpenAPI document (in process,
ASGI) for every operation, with a valid key; no response may be a 5xx or break the documented
schema (status codes, content types, bodies). Bounded examples keep it well under a minute."""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from api.app import create_app
from api.security import create_key, create_tenant
from tests.api.conftest import csv_bytes, test_settings

_state: dict = {}
# what the API promises: no server error, and every response as documented (status code, content
# type, headers, body schema). Negative-testing checks such as "missing header accepted" do not
# apply: the key is always sent, so requests without one are not generated.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


def _app():
    import tempfile

    d = tempfile.mkdtemp(prefix="cre-st-")
    app = create_app(test_settings(f"sqlite:///{d}/st.sqlite", sync_max_cells=20_000,
                                   role_max_cells={"bank": 10**5, "insurer": 10**5, "bureau": 10**5, "admin": 0}))
    client = TestClient(app)
    client.__enter__()
    with app.state.db.session() as s:
        t = create_tenant(s, "bureau-st", "bureau")
        key = create_key(s, t)[1]
    h = {"Authorization": f"Bearer {key}"}
    client.post("/v1/portfolios", headers=h, files={"file": ("p.csv", csv_bytes(10), "text/csv")})
    _state.update(app=app, client=client, headers=h)
    return app


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_responses_match_the_schema(case):
    case.call_and_validate(headers=_state["headers"], checks=CHECKS)


def teardown_module(module):
    c = _state.get("client")
    if c is not None:
        c.__exit__(None, None, None)
