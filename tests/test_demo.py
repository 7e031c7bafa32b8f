"""`tidings demo`, run as a user runs it: a subprocess on a fresh home, then again on the
same home. It leaves nothing running that it started (tests/cli/test_up.py: it joins a
running stack and leaves that running)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.cli.processes import dev_servers_of
from tidings.store.reports import OPENED_RULE


def funnel_value(output: str, label: str) -> int:
    match = re.search(rf"{label}\s*│\s*(\d+)", output)
    assert match, f"{label!r} missing from:\n{output}"
    return int(match.group(1))


def _number(pattern: str, output: str) -> int:
    match = re.search(pattern, output)
    assert match, f"{pattern!r} missing from:\n{output}"
    return int(match.group(1))


def run_demo(home: Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "TIDINGS_"))}
    env.update(TIDINGS_HOME=str(home), COLUMNS="300")
    tidings = Path(sys.executable).parent / "tidings"
    done = subprocess.run(
        [str(tidings), "demo", "--profiles", "40", "--exit"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_demo_prints_a_consistent_funnel_and_runs_again_in_the_same_home(
    tmp_path: Path,
) -> None:
    # a home whose name looks like Rich markup is printed as it is
    home = tmp_path / "[bold]demo[" / ".tidings"
    for _ in range(2):
        output = run_demo(home, tmp_path)
        assert f"tidings demo · state in {home}" in output
        gone = _number(r"(\d+) tokens the simulators will report as unregistered", output)
        opened = _number(r"opened (\d+) pushes through the API", output)
        clicked = _number(r"followed (\d+) tracked links", output)
        assert funnel_value(output, "profiles targeted") == 40
        sent = funnel_value(output, "pushes sent")
        assert funnel_value(output, "delivered") == sent - gone
        assert funnel_value(output, "tokens invalidated") == gone
        assert funnel_value(output, "opened") == opened > 0
        # each followed link was recorded as a click by the redirect itself
        assert funnel_value(output, "clicked") == clicked > 0
        assert OPENED_RULE in output
        # nothing was running: the demo started Temporal and the simulators, and stopped them
        assert "already running" not in output
        assert json.loads((home / "temporal.json").read_text())["pid"] is None
        assert dev_servers_of(home) == []
        assert not (home / "sim" / "endpoints.json").exists()


def test_demo_serves_the_console_with_its_run_until_ctrl_c(tmp_path: Path) -> None:
    """Without ``--exit`` the demo ends by printing the console's address and serves it (the
    demo's run there to look at) until Ctrl-C, then stops what it started."""
    home = tmp_path / ".tidings"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "TIDINGS_"))}
    env.update(TIDINGS_HOME=str(home), COLUMNS="300")
    tidings = Path(sys.executable).parent / "tidings"
    demo = subprocess.Popen(
        [str(tidings), "demo", "--profiles", "5"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("console: "):
                break
        address = re.search(r"console: (\S+)", "".join(lines))
        assert address, "".join(lines)
        key = (home / "admin.key").read_text().strip()
        with httpx.Client(follow_redirects=False, timeout=30) as browser:
            login = browser.post(
                address.group(1).split("/console/")[0] + "/console/login",
                data={"key": key, "next": "/console/runs/" + address.group(1).rsplit("/", 1)[1]},
            )
            assert login.status_code == 303
            run_page = browser.get(address.group(1))
        assert run_page.status_code == 200
        assert "Funnel per push node" in run_page.text
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=120) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert dev_servers_of(home) == []
    assert not (home / "sim" / "endpoints.json").exists()
