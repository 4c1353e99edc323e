"""Map failures of CLI commands to a message on stderr and a documented exit code."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from istio_upgrade.cli.exit_codes import ExitCode
from istio_upgrade.cli.specfile import SpecError, error_lines
from istio_upgrade.client import ClusterBusyError, ConnectionConfigError, SpecConflictError

T = TypeVar("T")

FROM_OPTIONS = frozenset({"AbortRequest", "ApproveRequest", "ExtendSoakRequest"})
"""Models the commands build from their options: refusing one is bad input (exit 2)."""


class CommandError(click.ClickException):
    """An error with its own exit code; printed as ``error: <message>``."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        # click reads the code from the instance; one class serves every code.
        self.exit_code = int(code)  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` and turn the errors an operator can act on into :class:`CommandError`."""
    try:
        return asyncio.run(coro)
    except SpecError as error:
        for line in error.lines:
            click.echo(f"{error.source}: {line}", err=True)
        raise click.exceptions.Exit(int(ExitCode.USAGE)) from error
    except ValidationError as error:
        if error.title not in FROM_OPTIONS:
            raise  # e.g. an answer that does not decode: not the operator's input
        for line in error_lines(error):
            click.echo(f"options: {line}", err=True)
        raise click.exceptions.Exit(int(ExitCode.USAGE)) from error
    except (ClusterBusyError, SpecConflictError) as error:
        raise CommandError(f"rejected: {error}", ExitCode.REJECTED) from error
    except ConnectionConfigError as error:
        raise CommandError(str(error), ExitCode.USAGE) from error
    except WorkflowAlreadyStartedError as error:
        raise CommandError(
            f"rejected: upgrade {error.workflow_id} already succeeded; a succeeded upgrade is "
            "not repeated (start another revision, or check `status`)",
            ExitCode.REJECTED,
        ) from error
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        message = getattr(cause, "message", None) or str(cause or error)
        raise CommandError(f"rejected: {message}", ExitCode.REJECTED) from error
    except WorkflowQueryFailedError as error:
        raise CommandError(f"query failed: {error.message}", ExitCode.ERROR) from error
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND and "already completed" in error.message:
            # An update sent to an upgrade that has ended: the request, not the id, is wrong.
            raise CommandError(
                f"rejected: the upgrade has already ended ({error.message})", ExitCode.REJECTED
            ) from error
        if error.status == RPCStatusCode.NOT_FOUND:
            raise CommandError(f"not found: {error.message}", ExitCode.UNAVAILABLE) from error
        if error.status in {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED}:
            raise CommandError(
                f"Temporal unavailable: {error.message}; check --address / TEMPORAL_ADDRESS",
                ExitCode.UNAVAILABLE,
            ) from error
        raise CommandError(f"Temporal error: {error.message}", ExitCode.ERROR) from error
    except RuntimeError as error:
        # The SDK's connect() raises RuntimeError("Failed client connect: …").
        if "connect" in str(error).lower():
            raise CommandError(
                f"{error}; check --address / TEMPORAL_ADDRESS", ExitCode.UNAVAILABLE
            ) from error
        raise
