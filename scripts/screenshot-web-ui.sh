#!/usr/bin/env bash
# Take the screenshots of the Temporal Web UI used in the docs (docs/web-ui*.png).
#
# Starts the local stack the demo uses (Temporal dev server with its Web UI, the `demo`
# sandbox cluster, its Prometheus, a worker), starts the demo upgrade with an approval before
# the tags move, waits until it waits for that approval — every batch migrated and gated —
# and photographs its workflow page with headless Chromium (`apt-get install -y chromium`).
# Then it aborts the upgrade and stops everything. About a minute and a half.
# A one-off tool for the docs: nothing in the tests or CI needs Chromium.
#
#   scripts/screenshot-web-ui.sh [OUT_DIR]      # default docs/
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out_dir="$(realpath "${1:-docs}")"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -z "$browser" ]; then
  echo "error: Chromium not found; install it with: apt-get install -y chromium" >&2
  exit 2
fi
# shellcheck disable=SC1091
[ -d .venv ] && source .venv/bin/activate
export BROWSER_BIN="$browser" OUT_DIR="$out_dir"

python - <<'EOF'
import asyncio
import base64
import os
import tempfile
from pathlib import Path

import aiohttp

from istio_upgrade.cli.demo import demo_spec, write_bundle
from istio_upgrade.client import abort, get_progress, start_upgrade
from istio_upgrade.devenv.ports import free_port
from istio_upgrade.devenv.stack import DevStack


async def shoot(
    url: str, out: Path, work: Path, height: int = 1300, tab: str | None = None
) -> None:
    """Open ``url`` in headless Chromium, give the app a few seconds, save a PNG.

    With ``tab``, first click the link whose text starts with it (a tab of the page).

    Driven over the DevTools protocol rather than ``--screenshot``: the page of a running
    workflow keeps polling, so Chromium's virtual-time budget never runs out. Asynchronous,
    because the worker in this process must answer the Web UI's queries meanwhile (the
    "Current details" come from one).
    """
    port = free_port()
    browser = await asyncio.create_subprocess_exec(
        os.environ["BROWSER_BIN"], "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--hide-scrollbars",
        f"--user-data-dir={work / 'chromium'}", f"--window-size=1400,{height}",
        f"--remote-debugging-port={port}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                        pages = [t for t in await response.json() if t["type"] == "page"]
                    if pages:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 1000))

                async def call(method: str, **params: object) -> dict:
                    number = next(ids)
                    await ws.send_json({"id": number, "method": method, "params": params})
                    while True:
                        message = await ws.receive_json()
                        if message.get("id") == number:
                            return message.get("result", {})

                await call("Page.enable")
                await call("Page.navigate", url=url)
                await asyncio.sleep(12)
                if tab is not None:
                    click = (
                        "[...document.querySelectorAll('a,button')]"
                        f".find(e => e.textContent.trim().startsWith({tab!r}))?.click()"
                    )
                    await call("Runtime.evaluate", expression=click)
                    await asyncio.sleep(4)
                shot = await call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.kill()
        await browser.wait()
    print(f"saved {out} ({url})")


async def main() -> None:
    out_dir = Path(os.environ["OUT_DIR"])
    work = Path(tempfile.mkdtemp(prefix="istio-upgrade-screenshot-"))
    async with DevStack(work, ui=True, ui_port=free_port()) as stack:
        temporal = await stack.start_temporal()
        cluster = await stack.add_cluster("demo", "demo")
        await stack.start_worker()
        spec = demo_spec(cluster, write_bundle(work))
        spec = spec.model_copy(update={"approvals": spec.approvals.model_copy(
            update={"before_promote": True})})
        handle = await start_upgrade(stack.client, spec)
        print(f"upgrade {handle.id} started; Web UI {temporal.workflow_url(handle.id)}")
        while True:
            progress = await get_progress(stack.client, handle.id)
            if progress.waiting_for and "move tags" in progress.waiting_for:
                break
            if progress.phase.value in {"ROLLED_BACK", "FAILED"}:
                raise SystemExit(f"upgrade ended {progress.phase.value}: {progress.errors}")
            await asyncio.sleep(1)
        run_id = (await handle.describe()).run_id
        page = f"{temporal.workflow_url(handle.id)}/{run_id}"
        # "User Metadata": the summary and details set at start, the live progress table.
        await shoot(f"{page}/history", out_dir / "web-ui.png", work, tab="User Metadata")
        # Its search attributes, the phase kept current by the workflow.
        await shoot(f"{page}/metadata", out_dir / "web-ui-search-attributes.png", work, 700)
        # The timeline: every step an activity with its summary.
        await shoot(f"{page}/timeline", out_dir / "web-ui-timeline.png", work)
        await shoot(f"{temporal.ui_url}?query=IstioCluster%3D%27demo%27",
                    out_dir / "web-ui-list.png", work, height=600)
        await abort(stack.client, handle.id, "screenshot", "screenshot taken")


asyncio.run(main())
EOF
