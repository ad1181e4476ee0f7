"""A real browser for the console's tests: Debian's chromium (``scripts/setup --system`` installs it),
driven by Playwright's Python package with ``executable_path`` (Playwright downloads no browser here).
Without chromium the tests are skipped, except when ``CI`` is set: then they fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.tenant import Tenant

CHROMIUM = os.environ.get("CALLROOM_CHROMIUM", "/usr/bin/chromium")


# Module-scoped: sync Playwright runs its own event loop in this thread while it is open, and the async
# tests that come after the browser tests need the thread without it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        message = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + " (required when CI is set)")
        pytest.skip(message)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def console(browser: Browser, tenant: Tenant, page_name: str = "overview") -> Page:
    """A console signed in with the tenant's key (kept in the tab's session storage, as the sign-in form
    does), on ``page_name``, with its push channel up."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(f"sessionStorage.setItem('callroom.console.key', {tenant.api_key!r})")
    page = context.new_page()
    page.goto(f"{tenant.node.root_url}/console#{page_name}")
    page.wait_for_selector("[data-live=up]", timeout=5000)
    return page


@pytest.fixture
def pages(browser: Browser) -> Iterator[list[Page]]:
    """Pages opened by a test, closed after it."""
    opened: list[Page] = []
    yield opened
    for page in opened:
        page.context.close()
