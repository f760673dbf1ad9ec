"""The official MCP conformance suite against /mcp: the scenarios that judge a gateway.

Scenarios that call fixture tools (test_simple_text, ...) or need resources/prompts fail by
design on a gateway and are not run here; the note on the issue lists a full run.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.node, pytest.mark.django_db(transaction=True)]

SUITE = ROOT.parent / "shared" / "tools" / "conformance.sh"
SCENARIOS = [
    "server-initialize",
    "ping",
    "tools-list",
    "logging-set-level",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
]


def test_gateway_scenarios_of_the_official_conformance_suite_pass(start_gateway):
    if not SUITE.exists() or shutil.which("npm") is None:
        pytest.skip(f"needs {SUITE} and npm")
    gateway = start_gateway()
    args = ["bash", str(SUITE), gateway.mcp_url, "--timeout", "120"]
    for scenario in SCENARIOS:
        args += ["--scenario", scenario]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert f"{len(SCENARIOS)} passed, 0 failed" in proc.stdout
