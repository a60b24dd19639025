"""schemathesis against a live docqa: generated requests, valid and not, for every
operation of the OpenAPI schema. No server error, and every status code and body that
comes back is the one the schema declares. Bounded (a few examples per operation) so the
suite stays quick; `make fuzz` runs it longer."""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from api.main import create_app
from tests.fakes.loopback import serve

KEY = "fuzz-admin-key"
EXAMPLES = int(os.environ.get("DOCQA_TEST_FUZZ_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory, embedder):
    from app import Docqa
    from docqa.settings import load_settings

    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("fuzz") / "data",
        api={"api_key": KEY, "rate_limits": {"enabled": False}, "max_upload_mb": 1},
    )
    served = serve(create_app(docqa=Docqa(settings, embedder=embedder)))
    # Something to find, so search and ask take their full path.
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        files = [("files", ("canteen.txt", b"The canteen opens at noon on weekdays."))]
        assert c.post("/v1/documents", files=files).status_code == 202
    yield served.url
    served.stop()


def test_every_operation_keeps_its_schema(fuzzed_server) -> None:
    # Operations are walked here rather than through schemathesis' pytest plugin, whose
    # lazy fixture loading does not work with pytest 9.
    schema = schemathesis.openapi.from_url(f"{fuzzed_server}/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {KEY}"},
                # A schema-valid request may still be refused for what it means (a chat
                # without a user message, a file type docqa does not parse): a 4xx then
                # is right, as long as the schema declares it.
                excluded_checks=[positive_data_acceptance],
                timeout=60,
            )

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - every operation is tried, all reported
            failures[operation.label] = str(exc)[:3000]
    assert operations >= 14
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
