"""docs/getting-started.md, run as written against the sandbox, Prometheus, Temporal and a worker.

Every shell block the document marks ``<!-- sandbox … -->`` is run in order by ``bash`` in one
working directory, after the document's own variables block, with only the variables the
document defines pointed at the test's servers (``KUBECONFIG``, ``TEMPORAL_ADDRESS``,
``PROMETHEUS_URL``, ``PROMETHEUS_LOCAL``, ``CLUSTER``, the gate timings) and
``TEMPORAL_TASK_QUEUE`` at the test's worker. A block must exit with the code its marker
names (0 unless ``exit=N``) and print every ``expect="…"`` fragment (``$VARIABLES``
expanded); ``until`` re-runs it until it does (a command observing progress). The one step
the sandbox cannot run, rendering the bundle with ``helm template``, is replaced by the
sandbox's own rendering of upstream's istiod chart.
"""

from __future__ import annotations

import asyncio
import os
import re
import string
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from istio_upgrade.devenv.bundles import revision_bundle
from tests.integration.upgrade_stack import upgrade_stack

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "getting-started.md"
BLOCK_TIMEOUT_S = 600.0
"""Longest a block may run: ``watch`` follows the whole upgrade."""
UNTIL_TIMEOUT_S = 300.0
"""Longest an ``until`` block is re-run before the test fails."""

_MARKED = re.compile(r"<!-- sandbox(?P<attrs>[^\n]*?)-->\n```bash\n(?P<body>.*?)```", re.S)
_EXPECT = re.compile(r'expect="((?:[^"\\]|\\.)*)"')
_EXIT = re.compile(r"\bexit=(\d+)")


@dataclass
class Block:
    """One marked block of the guide."""

    line: int
    body: str
    variables: bool = False
    until: bool = False
    exit_code: int = 0
    expect: list[str] = field(default_factory=list)


def marked_blocks(text: str) -> list[Block]:
    """The guide's marked blocks, in document order."""
    blocks = []
    for match in _MARKED.finditer(text):
        attrs = match["attrs"]
        exit_code = _EXIT.search(attrs)
        blocks.append(
            Block(
                line=text.count("\n", 0, match.start()) + 1,
                body=match["body"],
                variables="variables" in attrs.split(),
                until=" until" in f" {attrs}",
                exit_code=int(exit_code[1]) if exit_code else 0,
                expect=[e.replace('\\"', '"') for e in _EXPECT.findall(attrs)],
            )
        )
    return blocks


def test_the_guide_marks_its_variables_and_its_steps() -> None:
    blocks = marked_blocks(GUIDE.read_text())
    assert blocks[0].variables and sum(b.variables for b in blocks) == 1
    commands = "\n".join(b.body for b in blocks)
    for step in ("istio-upgrade plan", "istio-upgrade start", "istio-upgrade watch"):
        assert step in commands, step
    assert "istio-upgrade approve" in commands and "promtool check rules" in commands
    # Every marker that is not a bash block's would be silently skipped.
    assert GUIDE.read_text().count("<!-- sandbox") == len(blocks)


@dataclass
class Shell:
    """Runs the guide's blocks one after the other in one directory and environment."""

    cwd: Path
    env: dict[str, str]
    variables: str

    async def run(self, body: str) -> tuple[int, str]:
        script = f"set -eo pipefail\n{self.variables}\n{body}"
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script,
            cwd=self.cwd,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), BLOCK_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace")

    async def values(self) -> dict[str, str]:
        """The environment after the variables block, to expand expectations."""
        code, out = await self.run("env")
        assert code == 0, out
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


async def run_block(shell: Shell, block: Block, values: dict[str, str]) -> str:
    """Run ``block`` (again and again with ``until``) until it meets its marker; its output."""
    wanted = [string.Template(e).safe_substitute(values) for e in block.expect]
    deadline = time.monotonic() + UNTIL_TIMEOUT_S
    while True:
        code, out = await shell.run(block.body)
        missing = [w for w in wanted if w not in out]
        if code == block.exit_code and not missing:
            return out
        if not block.until or time.monotonic() > deadline:
            pytest.fail(
                f"docs/getting-started.md line {block.line}: exit {code} "
                f"(expected {block.exit_code}), missing {missing}:\n{block.body}\n--- output\n{out}"
            )
        await asyncio.sleep(1)  # a status poll: the block observes the upgrade's progress


async def test_getting_started_runs_against_the_sandbox(
    temporal_dev_server: Any, sandbox_factory: Any, prometheus_factory: Any, tmp_path: Path
) -> None:
    blocks = marked_blocks(GUIDE.read_text())
    variables = blocks[0]
    async with upgrade_stack(
        temporal_dev_server.env.client, sandbox_factory, prometheus_factory
    ) as stack:
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT),
            "KUBECONFIG": stack.kubeconfig,
            "TEMPORAL_ADDRESS": temporal_dev_server.address,
            "TEMPORAL_TASK_QUEUE": stack.task_queue,
            "PROMETHEUS_URL": stack.prometheus.url,
            "PROMETHEUS_LOCAL": stack.prometheus.url,
            "CLUSTER": f"gs-{uuid.uuid4().hex[:8]}",
            # The sandbox's traffic is generated in seconds: second-long windows, and the
            # low-traffic namespaces' INCONCLUSIVE batches proceed instead of waiting.
            "WARMUP_SECONDS": "1",
            "SOAK_SECONDS": "4",
            "INTERVAL_SECONDS": "2",
            "MAX_SOAK_SECONDS": "12",
            "SHORT_WINDOW_SECONDS": "4",
            "ON_INCONCLUSIVE": "proceed",
            "COLUMNS": "200",  # a terminal wide enough for the tables' ids
        }
        for name in ("TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE", "NO_COLOR"):
            env.pop(name, None)
        shell = Shell(cwd=tmp_path, env=env, variables=variables.body)
        values = await shell.values()
        # `helm template istiod istio/istiod …` of the guide: the sandbox renders the same
        # chart (istio_sandbox/istio) for the revision the guide names.
        new, rev = values["ISTIO_NEW"], values["NEW_REV"]
        (tmp_path / f"istiod-{rev}.yaml").write_text(revision_bundle(new, rev))
        watched = ""
        for block in blocks[1:]:
            if "istio-upgrade remove-revision" in block.body:
                deal_with_what_keeps_the_old_revision(stack, watched, values["OLD_REV"])
            out = await run_block(shell, block, values)
            print(f"--- line {block.line}\n{block.body}{out}")  # shown when a later step fails
            if "istio-upgrade watch" in block.body:
                watched = out
        # The upgrade the guide started ended, and the guide's remove-revision removed the old
        # istiod that the demo scenario's bare pod had kept.
        deployments = {
            d["metadata"]["name"]
            for d in stack.objects("/apis/apps/v1/namespaces/istio-system/deployments")
        }
        assert f"istiod-{rev}" in deployments
        assert f"istiod-{values['OLD_REV']}" not in deployments


def deal_with_what_keeps_the_old_revision(stack: Any, watched: str, old: str) -> None:
    """What the guide asks of the reader before remove-revision: recreate (here: delete) the
    bare pods the result names as keeping the old revision. The sandbox's demo scenario has
    one (batch/debug-shell); a kind cluster following the guide has none."""
    kept = re.search(rf"running pod\(s\) injected by {re.escape(old)}: ([^;]+);", watched)
    assert kept, f"the demo scenario's bare pod should have kept {old}:\n{watched}"
    for name in kept[1].split(","):
        namespace, pod = name.strip().split("/")
        assert stack.delete(f"/api/v1/namespaces/{namespace}/pods/{pod}") in {200, 202}
