"""Schemathesis against the served OpenAPI spec: generated requests to every operation never get a
5xx, and every response matches the spec (status codes, content types, bodies, headers)."""

from __future__ import annotations

import itertools
import shutil
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from decayrec.service.app import create_app
from decayrec.service.auth import Keys
from decayrec.service.config import ServiceConfig
from decayrec.service.runtime import Service
from servicekit import ADMIN, KEYS, Clock, bearer, shop_store, wait_until

pytestmark = pytest.mark.slow

# Per-event rejections are part of the contract (a batch with a bad event is a 200 naming it),
# so schemathesis's "negative data must be rejected with a 4xx" check does not apply; these do.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    root = tmp_path_factory.mktemp("openapi")
    last = shop_store(root, users=80)
    directory = root / "copy"
    shutil.copytree(root / "store", directory)
    service = Service(ServiceConfig(store=directory, refit_seconds=0), clock=Clock(last + timedelta(minutes=1)))
    service.start()
    wait_until(lambda: service.ready)
    app = create_app(service, Keys.parse(KEYS), manage_lifecycle=False)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    service.stop()


# schemathesis's pytest plugin does not load under pytest 9 here, so each operation runs
# through hypothesis directly (the same strategies and checks the plugin would use).
def test_generated_requests_get_no_5xx_and_answers_that_follow_the_spec(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 13
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            case.call_and_validate(headers=bearer(ADMIN), checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation with nothing a client could get wrong
    served = api_schema.app.state.service.metrics.requests.collect()[0].samples
    statuses = {s.labels["status"] for s in served if s.name.endswith("_total")}
    assert sum(s.value for s in served if s.name.endswith("_total")) >= 10 * len(operations)
    assert not any(code.startswith("5") for code in statuses - {"503"}) and {"200", "404", "422"} <= statuses
