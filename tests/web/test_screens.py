"""The web screens in a real browser: Debian's chromium driven by Playwright for Python (no
browser download), against a real gateway and node on 127.0.0.1.

Flows: sign in; a limit order shows in the ladder and in my orders; a second key crosses it
and the fill shows in the tape, my fills and the balances; cancel; a bad quantity shows the
API's message at the field; an IPO subscription from the frozen funds to its settled status;
an operator halts the instrument from the console and the trader's screen shows the halt and
refuses the order at the order field; the auditor's read-only view; the trading screen on a
phone-sized viewport. Screenshots go to test-artifacts/web/ (git-ignored).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer
from openbell.gateway.client import Client
from openbell.gateway.keys import create_key
from openbell.sim.flow import venue_setup

sync_api = pytest.importorskip("playwright.sync_api")
Page = sync_api.Page
expect = sync_api.expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
SYMBOL = "WEBCO"
IPO = "WEBIPO"
SEED = b"web screens test seed"
TIMEOUT_MS = 10_000


@dataclass
class Keys:
    trader: tuple[str, str]
    operator: tuple[str, str]
    auditor: tuple[str, str]


@dataclass
class Site:
    url: str
    keys: Keys
    buyer: int  # the trader's account (the browser)
    seller: int  # the second key's account (Python)
    operator: Client
    seller_client: Client


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A gateway with the demo instruments and an empty instrument of its own (WEBCO), two
    fresh funded accounts, and keys: trader (buyer), a second trader (seller), operator,
    auditor."""
    data_dir = tmp_path_factory.mktemp("web")
    gateway = Gateway(GatewayConfig(data_dir=str(data_dir), port=0))  # loopback: no IP limits
    server = GatewayServer(gateway)
    port = server.start()
    gateway.bridge.submit_blocking(venue_setup(4))
    url = f"http://127.0.0.1:{port}"
    op_key = create_key(data_dir, "operator", rate_per_s=1000, burst=1000)
    operator = Client(url, *op_key, timeout=10)
    opened = operator.open_accounts(2)
    first = next(ev for ev in opened["events"] if ev["type"] == "AccountsOpened")
    buyer = int(first.get("first_account", first.get("first")))
    seller = buyer + 1
    operator.create_asset(SYMBOL, 0)
    operator.create_instrument(symbol=SYMBOL, base_asset=SYMBOL, quote_asset="USD",
                               tick_size="0.01", lot_quantity="1", reference_price="50.00",
                               band_bps=2000)  # fmt: skip
    operator.set_phase(SYMBOL, "PRE_OPEN")
    operator.set_phase(SYMBOL, "CONTINUOUS")
    for account in (buyer, seller):
        operator.deposit(account, "USD", "100000.00")
        operator.deposit(account, SYMBOL, "100")
    keys = Keys(
        trader=create_key(data_dir, "trader", [buyer], rate_per_s=1000, burst=1000),
        operator=op_key,
        auditor=create_key(data_dir, "auditor", rate_per_s=1000, burst=1000),
    )
    seller_client = Client(
        url, *create_key(data_dir, "trader", [seller], rate_per_s=1000, burst=1000), timeout=10
    )
    try:
        yield Site(url, keys, buyer, seller, operator, seller_client)
    finally:
        operator.close()
        seller_client.close()
        server.stop()


@pytest.fixture(scope="module")
def browser_context() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make test does it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="openbell-chromium-")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )  # fmt: skip
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def open_page(context: object, site: Site, key: tuple[str, str], errors: list[str]) -> Page:
    page: Page = context.new_page()  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(site.url + "/")
    page.fill("#key-id", key[0])
    page.fill("#secret", key[1])
    page.click("#sign-in")
    expect(page.locator("#who")).to_contain_text(key[0])
    expect(page.locator("#feed-state")).to_have_text("live")
    return page


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_trading_screen_order_fill_cancel(browser_context: object, site: Site) -> None:
    errors: list[str] = []
    page = open_page(browser_context, site, site.keys.trader, errors)
    expect(page.locator("#who")).to_contain_text(f"account {site.buyer}")
    page.select_option("#instrument", SYMBOL)
    expect(page.locator("#instrument-info")).to_contain_text("WEBCO/USD")

    # a bad quantity: the API's message at the quantity field, nothing placed
    page.fill("#price", "50.00")
    page.fill("#quantity", "1.5")
    page.click("#place-order")
    quantity_error = page.locator('[data-error-for="quantity"]')
    expect(quantity_error).not_to_be_empty()
    expect(page.locator("#orders tr[data-order-id]")).to_have_count(0)

    # a limit order rests: in the ladder and in my orders; its funds are frozen
    page.fill("#quantity", "7")
    page.click("#place-order")
    expect(quantity_error).to_be_empty()
    level = page.locator('.ladder-side.bids .level[data-price="50.00"]')
    expect(level).to_contain_text("7")
    mine = page.locator("#orders tr[data-order-id]")
    expect(mine).to_have_count(1)
    expect(mine.first).to_contain_text("50.00")
    expect(page.locator('#balances tr[data-asset="USD"] [data-col="frozen"]')).to_have_text(
        "350.00"
    )

    # a second key sells into it: the tape, my fills, balances; the order is gone
    site.seller_client.place_order(account=site.seller, symbol=SYMBOL, side="SELL",
                                   quantity="7", price="50.00")  # fmt: skip
    expect(page.locator("#tape tbody tr").first).to_contain_text("50.00")
    expect(page.locator("#fills tbody tr").first).to_contain_text("50.00")
    expect(page.locator('#balances tr[data-asset="WEBCO"] [data-col="available"]')).to_have_text(
        "107"
    )
    expect(page.locator('#balances tr[data-asset="USD"] [data-col="available"]')).to_have_text(
        "99,650.00"
    )
    expect(page.locator('#balances tr[data-asset="USD"] [data-col="frozen"]')).to_have_text("0.00")
    expect(mine).to_have_count(0)
    expect(level).to_have_count(0)

    # cancel from my orders
    page.fill("#price", "49.50")
    page.fill("#quantity", "3")
    page.click("#place-order")
    expect(mine).to_have_count(1)
    expect(page.locator('.ladder-side.bids .level[data-price="49.50"]')).to_contain_text("3")
    shot(page, "trading")
    # replace: quantity down keeps the order (and its priority)
    mine.first.get_by_role("button", name="Replace").click()
    mine.first.get_by_label("new quantity").fill("2")
    mine.first.get_by_role("button", name="Save").click()
    expect(page.locator('.ladder-side.bids .level[data-price="49.50"]')).to_contain_text("2")
    expect(mine.first.locator("td").nth(5)).to_have_text("2")
    mine.first.get_by_role("button", name="Cancel").click()
    expect(mine).to_have_count(0)
    expect(page.locator('.ladder-side.bids .level[data-price="49.50"]')).to_have_count(0)
    assert errors == []
    page.close()


def test_operator_halts_and_the_trader_is_refused(browser_context: object, site: Site) -> None:
    errors: list[str] = []
    trader = open_page(browser_context, site, site.keys.trader, errors)
    trader.select_option("#instrument", SYMBOL)
    expect(trader.locator("#phase")).to_have_text("CONTINUOUS")
    operator = open_page(browser_context, site, site.keys.operator, errors)
    expect(operator.locator("#screen-console")).to_be_visible()
    row = operator.locator(f'#instruments tr[data-symbol="{SYMBOL}"]')
    row.get_by_role("button", name="Halt").click()
    expect(row).to_contain_text("HALTED")
    expect(operator.locator("#node")).to_contain_text("Applied seq")
    shot(operator, "console")

    expect(trader.locator("#phase")).to_have_text("HALTED")
    expect(trader.locator("#market-status")).to_contain_text("halted")
    trader.fill("#price", "50.00")
    trader.fill("#quantity", "1")
    trader.click("#place-order")
    refusal = trader.locator('[data-error-for="order"]')
    expect(refusal).to_contain_text("Instrument halted")
    expect(trader.locator("#orders tr[data-order-id]")).to_have_count(0)

    row.get_by_role("button", name="Resume").click()
    expect(trader.locator("#phase")).to_have_text("CONTINUOUS")
    assert errors == []
    trader.close()
    operator.close()


def test_ipo_subscription_to_its_status(browser_context: object, site: Site) -> None:
    errors: list[str] = []
    site.operator.ipo_create_offering(
        IPO, "USD", "10.00", 100, 5, 200, fee_bps=10,
        seed_commitment=hashlib.sha256(SEED).hexdigest(), chunk_rows=10,
    )  # fmt: skip
    page = open_page(browser_context, site, site.keys.trader, errors)
    page.click("#tab-ipo")
    card = page.locator(f'.offer[data-symbol="{IPO}"]')
    expect(card).to_contain_text("OPEN")
    card.locator("input.units").fill("3")
    # 3 units x 100 shares x 10.00 = 3,000.00, fee 10 bps = 3.00
    expect(card.locator(".freeze")).to_contain_text("Will freeze 3,003.00 USD")
    card.get_by_role("button", name="Subscribe").click()
    sub = page.locator(f'#subscriptions tr[data-symbol="{IPO}"]')
    expect(sub).to_contain_text("FROZEN")
    expect(sub).to_contain_text("3,003.00")

    site.seller_client.ipo_subscribe(IPO, account=site.seller, units=2,
                                     client_subscription_id="seller-1")  # fmt: skip
    site.operator.ipo_close(IPO)
    site.operator.ipo_number(IPO)
    site.operator.ipo_draw(IPO, SEED.hex())
    expect(sub.locator(".badge")).to_have_text(re.compile("^(WIN|LOSE)$"))
    site.operator.ipo_settle_all(IPO)
    expect(sub.locator(".badge")).to_have_text(re.compile("^(SETTLED|REFUNDED)$"))
    expect(sub).to_contain_text("000000000001")  # the first subscriber's allotment numbers
    expect(card.locator(".draw")).to_contain_text("winning numbers")
    expect(card.get_by_role("link", name="Verify the draw")).to_be_visible()
    shot(page, "ipo")
    assert errors == []
    page.close()


def test_auditor_view_is_read_only(browser_context: object, site: Site) -> None:
    errors: list[str] = []
    page = open_page(browser_context, site, site.keys.auditor, errors)
    expect(page.locator(".console-banner")).to_contain_text("Auditor view (read-only)")
    expect(page.locator(f'#instruments tr[data-symbol="{SYMBOL}"]')).to_be_visible()
    expect(page.locator("#instruments button")).to_have_count(0)
    expect(page.locator("#venue button")).to_have_count(0)
    expect(page.locator("#tab-console")).to_have_text("Audit")
    shot(page, "auditor")
    # the auditor reads any account's screen, and cannot trade from it
    page.click("#tab-trade")
    page.fill("#view-account", str(site.buyer))
    page.click("#view-account + button")
    expect(page.locator("#balances h2")).to_contain_text(str(site.buyer))
    expect(page.locator("#place-order")).to_be_disabled()
    assert errors == []
    page.close()


def test_trading_screen_on_a_phone(browser_context: object, site: Site) -> None:
    errors: list[str] = []
    page = open_page(browser_context, site, site.keys.trader, errors)
    page.set_viewport_size({"width": 390, "height": 844})
    page.select_option("#instrument", "ACME")
    expect(page.locator(".ladder-side.asks .level").last).to_be_visible()  # the best ask
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways: {width} px"
    shot(page, "trading-phone")
    assert errors == []
    page.close()
