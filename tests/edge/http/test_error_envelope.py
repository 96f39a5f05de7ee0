"""Every error has the contract's envelope; no stack trace ever reaches a client."""

from typing import Any

import httpx
import pytest

from tests.support.fixtures import ServiceFactory
from tests.support.procs import ServiceProcess


@pytest.fixture
def bff(start_bff: ServiceFactory) -> ServiceProcess:
    return start_bff(BFF_MAX_BODY_BYTES="4096")


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "requestId", "retryable"}
    assert error["requestId"] == response.headers["x-request-id"]
    return error


def test_unknown_route_is_not_found(bff: ServiceProcess) -> None:
    response = httpx.get(f"{bff.url}/bff/backoffice/v1/nope")
    assert response.status_code == 404
    assert _error(response)["code"] == "NOT_FOUND"


def test_wrong_method_is_405_with_allow(bff: ServiceProcess) -> None:
    response = httpx.delete(f"{bff.url}/health/live")
    assert response.status_code == 405
    assert _error(response)["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in response.headers["allow"]


def test_malformed_json_is_validation_failed(bff: ServiceProcess) -> None:
    response = httpx.post(
        f"{bff.url}/_test/echo", content=b'{"text": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "VALIDATION_FAILED"
    assert error["retryable"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": 5}, "text"),
        ({"text": "a", "count": -1}, "count"),
        ({}, "text"),
        ({"text": "a", "extra": 1}, "extra"),
    ],
)
def test_wrong_types_name_the_field(bff: ServiceProcess, body: object, field: str) -> None:
    response = httpx.post(f"{bff.url}/_test/echo", json=body)
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "VALIDATION_FAILED"
    assert field in error["message"]


def test_oversized_body_is_413(bff: ServiceProcess) -> None:
    response = httpx.post(f"{bff.url}/_test/echo", json={"text": "x" * 10_000})
    assert response.status_code == 413
    assert _error(response)["code"] == "PAYLOAD_TOO_LARGE"


def test_oversized_chunked_body_is_413(bff: ServiceProcess) -> None:
    def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1000

    response = httpx.post(
        f"{bff.url}/_test/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert _error(response)["code"] == "PAYLOAD_TOO_LARGE"


def test_internal_error_hides_the_exception(bff: ServiceProcess) -> None:
    response = httpx.get(f"{bff.url}/_test/boom")
    assert response.status_code == 500
    error = _error(response)
    assert error["code"] == "INTERNAL"
    assert "secret-detail" not in response.text
    assert "Traceback" not in response.text
    assert "secret-detail-that-must-not-leak" in bff.output()  # logged for operators


def test_request_id_is_echoed_and_hostile_ids_replaced(bff: ServiceProcess) -> None:
    echoed = httpx.get(f"{bff.url}/health/live", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    hostile = httpx.get(
        f"{bff.url}/health/live", headers={"x-request-id": "a b<script>" + "x" * 300}
    )
    assert hostile.status_code == 200
    assert hostile.headers["x-request-id"] != "a b<script>"
    assert len(hostile.headers["x-request-id"]) == 32


def test_bad_query_parameter_names_it(bff: ServiceProcess) -> None:
    response = httpx.get(f"{bff.url}/_test/slow", params={"ms": "soon"})
    assert response.status_code == 400
    assert "ms" in _error(response)["message"]


def test_metrics_count_requests_by_route_and_status(bff: ServiceProcess) -> None:
    httpx.get(f"{bff.url}/bff/backoffice/v1/nope")
    text = httpx.get(f"{bff.url}/metrics").text
    assert 'bff_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "bff_http_request_duration_seconds_bucket" in text
