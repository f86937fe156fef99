"""The upload-and-browse page, /images/browse, in a real headless Chromium driven by Selenium:
the token asked for once and kept out of every URL, an upload through the form, its thumbnail
really loaded, titles shown as text, paging next/previous, the viewer's next/previous image.

Debian's chromium and chromium-driver are required (.ci/run installs them): without them these
tests fail, they do not skip."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from support import encode, quadrants

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "page-test-token-Zq81"
TOKEN_KEY = "imgproxy-store-token"  # browse.js's session storage key
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
WAIT = 20  # seconds for anything the page does

# selenium 4.0 (the lowest version allowed) calls urllib3 1.26's deprecated getheader() per command
pytestmark = pytest.mark.filterwarnings("ignore:HTTPResponse.getheader:DeprecationWarning")


@pytest.fixture(scope="module")
def browser():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver "
                    "(.ci/run installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,900", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-extensions",
                     "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):  # loopback only
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def store_flags(folder: Path) -> tuple[str, ...]:
    return (f"--store_dir={folder / 'store'}", f"--store_token={TOKEN}",
            f"--store_db={folder / 'store.sqlite3'}", f"--job_db={folder / 'jobs.sqlite3'}")


def wait(driver, condition, message: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, message)


def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, element_id)


def titles(driver, grid: str = "grid") -> list[str]:
    from selenium.webdriver.common.by import By
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, f"#{grid} li .title")]


def sizes(driver, grid: str = "grid") -> list[str]:
    from selenium.webdriver.common.by import By
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, f"#{grid} li .size")]


def thumbnails_loaded(driver, grid: str) -> list[int]:
    """naturalWidth of each thumbnail of a grid: above 0 once the image really loaded."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(i => i.complete ? i.naturalWidth : 0)",
        f"#{grid} li img")


def enter_token(driver, token: str) -> None:
    field = wait(driver, lambda d: by_id(d, "token").is_displayed() and by_id(d, "token"), "no token field")
    field.clear()
    field.send_keys(token)
    by_id(driver, "token-form").submit()


def upload(driver, path: Path, title: str, count: int) -> None:
    """Upload through the form; `count` uploads have shown under "Just uploaded" afterwards."""
    by_id(driver, "file").send_keys(str(path))
    by_id(driver, "title").send_keys(title)
    by_id(driver, "upload").click()
    wait(driver, lambda d: len(titles(d, "uploaded-grid")) == count,
         f"upload {count} did not show: {by_id(driver, 'status').text!r}")


def requested(driver) -> list[dict]:
    """The requests the browser sent since the last call (Chrome's performance log)."""
    found = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            found.append(message["params"]["request"])
    return found


def policy_violations(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")
            if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]


@pytest.fixture(scope="module")
def empty_store(shared_proxy, tmp_path_factory):
    """A store server that stays empty: for the tests below that upload nothing."""
    return shared_proxy(*store_flags(tmp_path_factory.mktemp("empty-store")))


def test_page_is_public_with_a_policy_of_its_own(empty_store):
    proxy = empty_store
    page = proxy.get(path="/images/browse")  # no token
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == CSP
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-cache"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = page.body.decode()
    # Nothing inline for the policy to allow: no script body, no handler attribute, no style.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"\son\w+\s*=|\sstyle\s*=|<style", html, re.I)
    # The token field has no name: a form submitted without the script puts it in no URL.
    assert re.search(r'<input type="password" id="token"(?![^>]*\bname=)[^>]*>', html)
    for path, content_type in (("/images/browse.js", "text/javascript; charset=utf-8"),
                               ("/images/browse.css", "text/css; charset=utf-8")):
        r = proxy.get(path=path)
        assert r.status == 200 and r.headers["Content-Type"] == content_type and r.body
        assert b"innerHTML" not in r.body and b"outerHTML" not in r.body
        again = proxy.get(path=path, headers={"If-None-Match": r.headers["ETag"]})
        assert again.status == 304
    assert proxy.get(path="/images/browse.txt").status == 404


def test_no_page_without_a_store(proxy):
    assert proxy.get(path="/images/browse").status == 404


def test_upload_page_and_view_in_a_browser(browser, start_proxy, tmp_path):
    driver = browser
    proxy = start_proxy(*store_flags(tmp_path))
    requested(driver)  # drop what earlier tests left in the logs
    driver.get_log("browser")
    base = f"http://127.0.0.1:{proxy.port}"
    files = []
    for name, size, fmt in (("one.png", (300, 200), "PNG"), ("two.jpg", (200, 300), "JPEG"),
                            ("three.png", (120, 90), "PNG")):
        files.append(tmp_path / name)
        files[-1].write_bytes(encode(quadrants(size), fmt))
    first = '<b>bold</b> & "quoted"'

    driver.get(base + "/images/browse?limit=2")  # two images a page
    enter_token(driver, TOKEN)
    wait(driver, lambda d: by_id(d, "empty").is_displayed(), "the empty store's listing did not show")
    assert driver.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") == TOKEN
    assert driver.execute_script("return localStorage.length") == 0 and driver.get_cookies() == []

    upload(driver, files[0], first, 1)
    assert titles(driver, "uploaded-grid") == [first]  # shown as text, not as markup
    assert not driver.find_elements("css selector", "#uploaded-grid b, #grid b")
    assert sizes(driver, "uploaded-grid") == ["300×200 PNG"]
    wait(driver, lambda d: thumbnails_loaded(d, "uploaded-grid") == [150],
         "the uploaded thumbnail did not load (150 wide)")
    wait(driver, lambda d: titles(d) == [first], "the upload did not show in the listing")
    wait(driver, lambda d: thumbnails_loaded(d, "grid") == [150], "the listing's thumbnail did not load")

    upload(driver, files[1], "two", 2)
    upload(driver, files[2], "three", 3)
    assert titles(driver, "uploaded-grid") == ["three", "two", first]  # the latest first
    wait(driver, lambda d: titles(d) == [first, "two"] and by_id(d, "next").is_enabled(),
         "page 1 with Next did not show")
    assert sizes(driver) == ["300×200 PNG", "200×300 JPEG"]
    assert not by_id(driver, "previous").is_enabled()

    by_id(driver, "next").click()
    wait(driver, lambda d: titles(d) == ["three"], "page 2 did not show")
    wait(driver, lambda d: thumbnails_loaded(d, "grid") == [120], "page 2's thumbnail did not load")
    assert sizes(driver) == ["120×90 PNG"]
    assert by_id(driver, "page-number").text == "(page 2)"
    assert not by_id(driver, "next").is_enabled() and by_id(driver, "previous").is_enabled()

    by_id(driver, "previous").click()
    wait(driver, lambda d: titles(d) == [first, "two"], "page 1 did not show again")
    wait(driver, lambda d: thumbnails_loaded(d, "grid") == [150, 100], "page 1's thumbnails did not load")
    assert not by_id(driver, "previous").is_enabled() and by_id(driver, "next").is_enabled()

    # The viewer, image by image in upload order (/images/<id>/next and /previous).
    driver.find_element("css selector", "#grid li:first-child button.thumb").click()
    wait(driver, lambda d: by_id(d, "viewer").is_displayed() and by_id(d, "viewer-title").text == first,
         "the viewer did not open")
    by_id(driver, "viewer-next").click()
    wait(driver, lambda d: by_id(d, "viewer-title").text == "two", "the next image did not show")
    assert by_id(driver, "viewer-size").text == "200×300 JPEG"
    by_id(driver, "viewer-next").click()
    wait(driver, lambda d: by_id(d, "viewer-title").text == "three", "the image after did not show")
    by_id(driver, "viewer-next").click()
    wait(driver, lambda d: by_id(d, "status").text == "This is the last image.", "no end of the images")
    by_id(driver, "viewer-previous").click()
    wait(driver, lambda d: by_id(d, "viewer-title").text == "two", "the previous image did not show")
    wait(driver, lambda d: d.execute_script("const i = document.getElementById('viewer-image');"
                                            "return i.complete && i.naturalWidth") == 200,
         "the viewer's image did not load")

    # The token went out in Authorization headers, and in no URL: not the page's, not any
    # request's (the browser's own log), not any the server saw (its access log).
    sent = requested(driver)
    assert sent and all(TOKEN not in r["url"] for r in sent), [r["url"] for r in sent]
    with_token = {r["url"].split("?")[0].removeprefix(base) for r in sent
                  if r.get("headers", {}).get("Authorization") == f"Bearer {TOKEN}"}
    assert {"/images"} <= with_token and any(u.endswith("/next") for u in with_token), with_token
    assert TOKEN not in driver.current_url
    access = [line for line in proxy.log_path.read_text().splitlines() if "imgproxy.access" in line]
    assert any("POST /images 201" in line for line in access) and any("after=" in line for line in access)
    assert not [line for line in access if TOKEN in line]
    assert not policy_violations(driver)


def test_a_refused_token_is_asked_for_again(browser, empty_store):
    driver = browser
    proxy = empty_store
    driver.get_log("browser")
    driver.get(f"http://127.0.0.1:{proxy.port}/images/browse")
    enter_token(driver, "not-the-token")
    wait(driver, lambda d: by_id(d, "token-form").is_displayed()
         and "refused" in by_id(d, "token-reason").text, "a wrong token was not refused")
    assert not by_id(driver, "main").is_displayed()
    assert driver.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") is None

    enter_token(driver, TOKEN)
    wait(driver, lambda d: by_id(d, "empty").is_displayed(), "the right token was not taken")
    # Kept for the tab: a reload asks no more...
    driver.refresh()
    wait(driver, lambda d: by_id(d, "empty").is_displayed(), "the token was not kept for the tab")
    assert not by_id(driver, "token-form").is_displayed()
    # ...until the server refuses it (here: changed under the page), then it is asked for again.
    driver.execute_script(f"sessionStorage.setItem('{TOKEN_KEY}', 'changed')")
    driver.refresh()
    wait(driver, lambda d: by_id(d, "token-form").is_displayed()
         and "refused" in by_id(d, "token-reason").text, "a refused token was not asked for again")
    assert driver.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") is None
    assert not policy_violations(driver)
