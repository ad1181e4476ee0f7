"""The console in a real browser against a real node: what the SDK does appears within a second, a tone
shows its phone as talking, the mute button mutes in the API and in the audio, a queued caller's wait
counts up, an account sees only its own, and names are shown as text, never as markup."""

from __future__ import annotations

import time
import uuid

import numpy as np
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.browser.conftest import console
from tests.conftest import _tenant
from tests.support.tenant import Tenant


def _conference(tenant: Tenant, name: str, phone: str = "host", options: str = "answer_after=0") -> tuple[str, str]:
    cid = tenant.dial(phone, options)
    conf = tenant.client.conferences.create(call_control_id=cid, name=name)
    assert conf.data is not None
    return conf.data.id, cid


def test_sign_in_and_a_conference_made_through_the_sdk_appears_within_a_second(
        browser: Browser, tenant: Tenant, pages: list[Page]) -> None:  # fmt: skip
    context = browser.new_context()
    page = context.new_page()
    pages.append(page)
    page.goto(f"{tenant.node.root_url}/console#conferences")
    page.fill("input[name=key]", tenant.api_key)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-live=up]", timeout=5000)
    name = f"standup-{uuid.uuid4().hex[:6]}"
    cid = tenant.dial("host")
    started = time.monotonic()
    conf = tenant.client.conferences.create(call_control_id=cid, name=name)
    assert conf.data is not None
    expect(page.locator(f"[data-conference='{conf.data.id}'] [data-name]")).to_have_text(name, timeout=1000)
    assert time.monotonic() - started < 1.5
    expect(page.locator(f"[data-participant='{cid}']")).to_be_visible(timeout=1000)


def test_a_phone_sending_a_tone_shows_as_talking(browser: Browser, tenant: Tenant, pages: list[Page]) -> None:
    page = console(browser, tenant, "conferences")
    pages.append(page)
    conf_id, _ = _conference(tenant, "talking")
    talker = tenant.dial("talker", "answer_after=0;tone=500")
    tenant.client.conferences.actions.join(conf_id, call_control_id=talker)
    expect(page.locator(f"[data-participant='{talker}'] [data-state=talking]")).to_be_visible(timeout=3000)


def test_mute_from_the_console_mutes_in_the_api_and_in_the_audio(
        browser: Browser, tenant: Tenant, pages: list[Page]) -> None:  # fmt: skip
    page = console(browser, tenant, "conferences")
    pages.append(page)
    conf_id, listener = _conference(tenant, "mutes")
    talker = tenant.dial("talker", "answer_after=0;tone=500")
    tenant.client.conferences.actions.join(conf_id, call_control_id=talker)
    row = page.locator(f"[data-participant='{talker}']")
    row.locator("[data-action=mute]").click()
    expect(row.locator("[data-state=muted]")).to_be_visible(timeout=2000)
    participants = tenant.client.conferences.list_participants(conf_id)
    muted = {p.call_control_id: p.muted for p in participants.data}
    assert muted == {listener: False, talker: True}
    time.sleep(0.6)  # the listener's last half second is all after the mute
    heard = tenant.heard(listener, 0.4).astype(np.float64)
    assert np.sqrt(np.mean(heard**2)) < 100


def test_a_queued_callers_wait_counts_up(browser: Browser, tenant: Tenant, pages: list[Page]) -> None:
    page = console(browser, tenant, "queues")
    pages.append(page)
    caller = tenant.dial("caller")
    tenant.client.calls.actions.enqueue(caller, queue_name="support")
    wait = page.locator(f"[data-queue=support] [data-caller='{caller}'] [data-wait]")
    expect(wait).to_be_visible(timeout=2000)
    first = int(wait.inner_text().split()[0])
    expect(wait).not_to_have_text(f"{first} s", timeout=3000)
    assert int(wait.inner_text().split()[0]) > first
    expect(page.locator("[data-queue=support] [data-size]")).to_contain_text("1 /")


def test_a_key_does_not_see_another_accounts_conferences(
        browser: Browser, tenant: Tenant, pages: list[Page]) -> None:  # fmt: skip
    neighbour = _tenant(tenant.node, tenant.receiver)
    theirs, _ = _conference(neighbour, "their-room")
    page = console(browser, tenant, "conferences")
    pages.append(page)
    mine, _ = _conference(tenant, "my-room")
    expect(page.locator(f"[data-conference='{mine}']")).to_be_visible(timeout=2000)
    assert page.locator(f"[data-conference='{theirs}']").count() == 0
    assert "their-room" not in page.content()


def test_names_and_client_states_are_text_never_markup(
        browser: Browser, tenant: Tenant, pages: list[Page]) -> None:  # fmt: skip
    page = console(browser, tenant, "conferences")
    pages.append(page)
    alerts: list[str] = []

    def dialog(d: Dialog) -> None:
        alerts.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    name = "<img src=x onerror=alert(1)>"
    conf_id, cid = _conference(tenant, name)
    expect(page.locator(f"[data-conference='{conf_id}'] [data-name]")).to_have_text(name, timeout=2000)
    assert page.locator("main img").count() == 0
    page.click("[data-page=calls]")
    tenant.client.calls.actions.hangup(tenant.dial("stateful", client_state="PGI+Ym9sZDwvYj4="))
    expect(page.locator(f"[data-call='{cid}']")).to_be_visible(timeout=2000)
    assert alerts == []
