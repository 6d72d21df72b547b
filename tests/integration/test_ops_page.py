"""The live cluster page in a real browser (Debian's chromium + chromedriver, via selenium).

Against a manager over two sandbox nodes: the page shows every node, a container created
through the Docker API appears on its node's card, and a killed node turns unhealthy.
Screenshots go to $SHOAL_ARTIFACTS (else /tmp/shoal-ci-logs) as test artefacts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.integration.conftest import run_docker
from tests.integration.test_metrics import OpsManager, create, ops_manager

pytestmark = pytest.mark.asyncio(loop_scope="session")
__all__ = ["ops_manager"]  # the fixture, shared with test_metrics

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"


def artifacts_dir() -> str:
    path = os.environ.get("SHOAL_ARTIFACTS") or os.environ.get("CI_LOG_DIR") or "/tmp/shoal-ci-logs"
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Headless chromium with a throwaway profile; the driver is the system's, never downloaded."""
    profile = tempfile.mkdtemp(prefix="shoal-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1440,1000", f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


async def poll(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Seconds until `check()` (run off the event loop) holds; fails after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if await asyncio.to_thread(check):
                return time.monotonic() - start
        except WebDriverException:
            pass  # the card was redrawn under us: look again
        await asyncio.sleep(0.1)
    raise AssertionError(f"the page did not show {what} within {timeout}s")


def cards(driver: webdriver.Chrome) -> dict[str, str]:
    """{node name: state} of the node cards on the page."""
    return {
        c.get_attribute("data-node") or "": c.get_attribute("data-state") or ""
        for c in driver.find_elements(By.CSS_SELECTOR, "article.card")
    }


def on_card(driver: webdriver.Chrome, node: str, container: str, state: str = "") -> bool:
    """Whether the node's card lists the container (in `state`, if given)."""
    item = f'li[data-container="{container}"]' + (f'[data-state="{state}"]' if state else "")
    return bool(driver.find_elements(By.CSS_SELECTOR, f'article.card[data-node="{node}"] {item}'))


async def test_page_shows_nodes_containers_and_a_dead_node(
    ops_manager: OpsManager, browser: webdriver.Chrome
) -> None:
    mgr = ops_manager
    sandbox = mgr.sandbox
    # Give the screenshot some variety: a few image names, all the sandbox's busybox.
    for node in sandbox.nodes:
        for tag in ("shop/web:2.4", "shop/api:1.9", "redis-ish:7"):
            done = await run_docker(node.docker_host, "tag", "busybox:latest", tag)
            assert done.returncode == 0, done.stderr
    for name, node, image, host_config in (
        ("web-1", "node-0", "shop/web:2.4", {"Memory": 256 * 2**20}),
        ("api-1", "node-0", "shop/api:1.9", {"CpuShares": 1}),
        ("cache", "node-1", "redis-ish:7", {"Memory": 512 * 2**20}),
        ("web-2", "node-1", "shop/web:2.4", {}),
    ):
        status, body = await create(mgr, name, node, Image=image, HostConfig=host_config)
        assert status == 201, body

    await asyncio.to_thread(browser.get, mgr.ops_url + "/")
    await poll("both nodes healthy",
               lambda: cards(browser) == {"node-0": "healthy", "node-1": "healthy"}, 10)
    await poll("the containers made before the page opened",
               lambda: on_card(browser, "node-1", "cache") and on_card(browser, "node-0", "web-1"),
               10)
    strategy = browser.find_element(By.ID, "strategy").text
    assert strategy == "spread"
    assert browser.find_element(By.ID, "role").text == "primary"
    assert browser.find_element(By.ID, "nodes-total").text == "2"

    # A container created through the Docker API shows up on its node's card, live.
    status, body = await create(mgr, "worker-7", "node-1", Image="shop/api:1.9")
    assert status == 201, body
    took = await poll("worker-7 running on node-1",
                      lambda: on_card(browser, "node-1", "worker-7", "running"), 10)
    print(f"\ncontainer shown running on the page {took:.2f}s after its start returned")
    assert not on_card(browser, "node-0", "worker-7")
    shot = os.path.join(artifacts_dir(), "ops-page.png")
    await asyncio.to_thread(browser.save_screenshot, shot)

    # A killed node turns unhealthy on the page.
    await sandbox.nodes[1].kill()
    took = await poll("node-1 unhealthy",
                      lambda: cards(browser).get("node-1") == "unhealthy", 60)
    print(f"node-1 shown unhealthy {took:.2f}s after the kill")
    assert cards(browser)["node-0"] == "healthy"
    shot = os.path.join(artifacts_dir(), "ops-page-node-down.png")
    await asyncio.to_thread(browser.save_screenshot, shot)
    print(f"screenshots in {artifacts_dir()}")
