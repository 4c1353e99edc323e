"""The stubs the workflows call and the implementations the worker registers must agree.

A workflow schedules an activity by its stub (``istio_upgrade.activities.interface``); the
worker runs the implementation registered under the same name. A renamed activity, a changed
argument or result type on one side only would fail at run time in the middle of an upgrade;
here it fails CI.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from collections.abc import Callable
from typing import Any

import pytest
from temporalio import activity

from istio_upgrade.activities import interface
from istio_upgrade.activities.kube import KubeActivities
from istio_upgrade.worker import registered_activities


def _name(fn: Callable[..., Any]) -> str:
    defn = activity._Definition.from_callable(fn)
    assert defn is not None and defn.name, f"{fn!r} is not a named activity"
    return defn.name


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(fn)
    hints.pop("self", None)
    return hints


def _params(fn: Callable[..., Any]) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


IMPLEMENTATIONS = {_name(fn): fn for fn in registered_activities(KubeActivities())}
STUBS = {
    _name(fn): fn
    for _, fn in inspect.getmembers(interface, inspect.isfunction)
    if activity._Definition.from_callable(fn) is not None
}


def test_every_implementation_has_a_stub_and_every_stub_an_implementation() -> None:
    assert len(IMPLEMENTATIONS) == len(registered_activities(KubeActivities()))
    assert sorted(STUBS) == sorted(IMPLEMENTATIONS)


@pytest.mark.parametrize("name", sorted(IMPLEMENTATIONS))
def test_stub_has_the_implementations_signature(name: str) -> None:
    impl, stub = IMPLEMENTATIONS[name], STUBS.get(name)
    assert stub is not None, f"no stub for activity {name!r} in activities/interface.py"
    assert _params(stub) == _params(impl)
    assert _hints(stub) == _hints(impl)
    assert inspect.iscoroutinefunction(stub) == inspect.iscoroutinefunction(impl)
    assert stub.__name__ == name


def test_stubs_are_not_implementations() -> None:
    with pytest.raises(NotImplementedError, match="worker registers"):
        interface.discover(None)  # type: ignore[arg-type]


def test_workflows_and_the_interface_import_no_implementation() -> None:
    # A fresh interpreter: this test process has imported the implementations already.
    code = (
        "import sys\n"
        "import istio_upgrade.activities.interface, istio_upgrade.workflows.upgrade\n"
        "import istio_upgrade.workflows.removal\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'httpx')"
        " or (m.startswith('istio_upgrade.activities.') and not m.endswith('.interface'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
