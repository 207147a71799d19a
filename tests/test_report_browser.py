"""The HTML report renders in headless Chromium: sections present, charts drawn, no JS errors.

Needs Debian's `chromium` (`.ci/run` installs it; `make browser` does too). Without it the
test is skipped with that reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from funnelrec.pipeline import fit_funnel, write_report
from funnelrec.report.html import SECTIONS
from funnelrec.sequences import Sequences

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def report(seqs: Sequences, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    fit_funnel(seqs, out / "model", n_traits=4, epochs=1)
    return write_report(out / "model", out / "report.html", title="test <report> & co")


def test_report_renders_in_chromium(report: Path) -> None:
    url = report.resolve().as_uri()
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section in SECTIONS:
        assert f'id="{section}"' in dom.stdout, section
    # Plotly drew every chart (funnel, action weights, two maps, example profile bars).
    assert dom.stdout.count('class="main-svg"') >= 4
    assert "test &lt;report&gt; &amp; co" in dom.stdout  # escaped, not injected
    assert "Uncaught" not in dom.stderr, dom.stderr[-2000:]

    png = report.with_suffix(".png")
    shot = _chromium("--window-size=1300,4000", f"--screenshot={png}", url)
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # not a blank page
