"""``istio-upgrade demo`` end to end, as a user runs it: a child process, real servers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ISTIO_UPGRADE = [sys.executable, "-c", "from istio_upgrade.cli.main import main; main()"]
DEMO_TIMEOUT_S = 600


def demo_env() -> dict[str, str]:
    # Wide, colourless output so the assertions read plain lines.
    return {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


async def test_demo_succeeds_then_rolls_back(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *ISTIO_UPGRADE,
        "demo",
        "--run-dir",
        str(tmp_path / "run"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=demo_env(),
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), DEMO_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    assert "demo passed" in text
    summary = text[text.rindex("istio-upgrade demo") :]
    assert re.search(r"demo\s.*SUCCEEDED", summary), summary
    assert re.search(r"bad-canary\s.*ROLLED_BACK", summary), summary
    assert "FAIL" in summary  # the gate verdict that rolled the second upgrade back
    # The bare pod kept 1-30-3 after the clean upgrade; once it went, remove-revision did.
    assert re.search(r"demo\s.*removed", summary), summary
    assert "revision 1-30-3 removed from demo" in text
    bundle = tmp_path / "run" / "istiod-1-31-0.yaml"
    assert "istiod-1-31-0" in bundle.read_text()


async def test_ctrl_c_stops_every_server(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *ISTIO_UPGRADE,
        "demo",
        "--run-dir",
        str(tmp_path / "run"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=demo_env(),
    )
    assert proc.stdout is not None
    seen: list[str] = []
    urls: list[str] = []
    try:
        async with asyncio.timeout(120):
            while not any(line.startswith("rendered bundle:") for line in seen):
                line = (await proc.stdout.readline()).decode(errors="replace")
                assert line, "demo exited before it was up:\n" + "".join(seen)
                seen.append(line)
                urls += re.findall(r"http://127\.0\.0\.1:\d+", line)
        async with httpx.AsyncClient(timeout=5) as http:
            for url in urls:
                await http.get(url)  # every printed server answers
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130, "".join(seen) + rest.decode(errors="replace")
    assert len(urls) >= 5  # Web UI, and API + Prometheus of both clusters
    async with httpx.AsyncClient(timeout=2) as http:
        for url in urls:
            with pytest.raises(httpx.ConnectError):
                await http.get(url)
