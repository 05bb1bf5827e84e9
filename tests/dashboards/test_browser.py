"""The dashboard in a real browser: ``microdesign dashboard`` on loopback, loaded in headless Chromium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``) and selenium (the ``test`` extra); skips otherwise.
Set ``MICRODESIGN_SCREENSHOT=/some/file.png`` to keep a copy of the screenshot.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1600,1300",
)
SERVER_START_S = 60
RENDER_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen) -> None:
    """Stop the server (Streamlit, which `microdesign dashboard` execs into; its own process group), bounded."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


@pytest.fixture()
def dashboard_url(tiny_studies, tmp_path):
    """``microdesign dashboard --storage URL`` serving the tiny studies on 127.0.0.1 (stopped afterwards)."""
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "inverse", "dashboard", "--storage", tiny_studies.url, "--runs-dir", str(tiny_studies.runs_dir),
         "--port", str(port), "--address", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the dashboard did not answer within a minute:\n" + (tmp_path / "server.log").read_text()
            time.sleep(0.5)
        yield url
    finally:
        _stop(process)
        log.close()


def test_server_answers_on_loopback(dashboard_url):
    with urllib.request.urlopen(dashboard_url, timeout=10) as response:
        assert response.status == 200
        assert b'<div id="root"></div>' in response.read()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="needs Debian's chromium and chromium-driver")
def test_recipes_page_renders_in_chromium(dashboard_url, tiny_studies, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(10)
        driver.get(f"{dashboard_url}/?study={tiny_studies.single}")

        def rendered(d) -> bool:  # noqa: ANN001
            headings = [h.text for h in d.find_elements(By.CSS_SELECTOR, "h2, h3")]
            plots = d.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"] .main-svg')
            running = d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
            return "Ranked recipes" in headings and bool(plots) and not running

        WebDriverWait(driver, RENDER_S, poll_frequency=0.5).until(rendered)
        time.sleep(1.0)  # let plotly finish drawing the markers
        shot = tmp_path / "dashboard.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if os.environ.get("MICRODESIGN_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["MICRODESIGN_SCREENSHOT"])

        headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "h2, h3")]
        assert f"Study {tiny_studies.single}" in headings and "Recipe map" in headings
        assert driver.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')
        assert driver.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"] .scatterlayer .point')
        assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
        assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentError"]')
    finally:
        driver.quit()
