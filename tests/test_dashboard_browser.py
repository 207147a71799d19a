"""The dashboard in headless Chromium (driven by Playwright): pages load without console errors,
and posting an event from the page changes the shown profile."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from funnelrec.pipeline import fit_funnel
from funnelrec.sequences import Sequences

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")


def test_dashboard_pages_and_live_profile(seqs: Sequences, tmp_path: Path) -> None:
    from serving import KEY, free_port, start_server

    model_dir = tmp_path / "model"
    fit_funnel(seqs, model_dir, n_traits=4, epochs=1)
    port = free_port()
    proc = start_server(model_dir, tmp_path / "events.sqlite", port)
    errors: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            assert page.locator("#trait-cards .card").count() == 4
            assert page.locator("#segment-cards .card").count() >= 1
            assert page.locator("#ov-funnel .main-svg").count() >= 1
            assert page.locator("#segment-map .main-svg").count() >= 1
            page.screenshot(path=str(tmp_path / "overview.png"))

            cid = str(seqs.vocab.customer_ids[0])
            page.click("button[data-tab='customer']")
            page.fill("#cid", cid)
            page.click("#load")
            page.wait_for_function("document.body.dataset.profile !== undefined")
            before = page.evaluate("document.body.dataset.profile")
            assert page.locator("#recs li").count() == 5
            page.fill("#ev-item", str(seqs.vocab.item_ids[3]))
            page.select_option("#ev-action", "purchase")
            page.fill("#ev-key", KEY)
            page.click("#post")
            page.wait_for_function(
                "document.getElementById('post-result').textContent === 'accepted'"
            )
            page.wait_for_function(f"document.body.dataset.profile !== {before!r}")
            page.screenshot(path=str(tmp_path / "customer.png"), full_page=True)
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert not errors, errors
