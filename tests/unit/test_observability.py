"""Addresses of the worker's metrics and probe servers, and the error kinds it counts."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.exceptions import ApplicationError

from istio_upgrade.observability import (
    AddressError,
    Health,
    error_kind,
    health_address,
    metrics_address,
)


def test_servers_are_off_unless_named() -> None:
    assert metrics_address({}) is None
    assert health_address({"WORKER_HEALTH_ADDRESS": "off"}) is None


def test_addresses_are_host_and_port() -> None:
    assert metrics_address({"WORKER_METRICS_ADDRESS": ":9464"}) == "0.0.0.0:9464"
    assert metrics_address({"WORKER_METRICS_ADDRESS": "[::]:9464"}) == "[::]:9464"
    assert health_address({"WORKER_HEALTH_ADDRESS": "0.0.0.0:8080"}) == "0.0.0.0:8080"


@pytest.mark.parametrize("value", ["9464", "host:", "host:http", "0.0.0.0:70000"])
def test_a_bad_address_names_the_variable_and_the_form(value: str) -> None:
    with pytest.raises(AddressError, match=r"WORKER_METRICS_ADDRESS=.*expected host:port"):
        metrics_address({"WORKER_METRICS_ADDRESS": value})


def test_error_kinds_are_bounded_names() -> None:
    assert error_kind(ApplicationError("x", type="NotFound")) == "NotFound"
    assert error_kind(ApplicationError("x")) == "ApplicationError"
    assert error_kind(asyncio.CancelledError()) == "Cancelled"
    assert error_kind(TimeoutError()) == "TimeoutError"


def test_not_ready_before_workers_and_once_stopping() -> None:
    health = Health()
    assert health.ready() == (False, "not connected to Temporal yet")
    health.stopping = True
    assert health.ready() == (False, "shutting down")
