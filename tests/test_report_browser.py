"""The HTML report in a real browser: headless Chromium (Debian's chromium and chromium-driver) driven by Selenium.

Selenium is always given the chromedriver and Chromium found on PATH, so Selenium Manager never tries to download
either. Skipped, saying why, where one of them is missing. RUNNER_UPDATE_SCREENSHOT=1 also saves the screenshot as
docs/report.png, the README's picture.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from report_suite import XSS, Suite, build_suite

from runner.cli import cli

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromedriver on PATH (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    """The suite's run, with a transcript whose conversation ended in an error added, reported by `runner report`."""
    built = build_suite(tmp_path_factory.mktemp("browser"))
    source = built.transcripts / "specs" / "greet[repeat=1].json"
    broken = json.loads(source.read_text(encoding="utf-8"))
    broken.update(name="outage", spec_file="specs/outage.yaml", verdict="error", tags=["smoke"],
                  error="the backend went away: <b>503</b>")
    (built.transcripts / "specs" / "outage.json").write_text(json.dumps(broken), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(built.root)  # the page names the folders as given: short, for the screenshot
        result = CliRunner().invoke(cli, ["report", "transcripts", "-o", "full.html", "--baseline", "baseline"])
    assert result.exit_code == 0, result.output
    return built


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--allow-file-access-from-files"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    # the page's own viewport at exactly 1280x800, whatever the headless window's frame takes
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: Any, suite: Suite) -> Any:
    """The full report, freshly loaded."""
    browser.get((suite.root / "full.html").as_uri())
    from selenium.webdriver.support.ui import WebDriverWait

    root = browser.find_element(By.TAG_NAME, "html")
    assert root.get_attribute("data-ready") == "true"  # the table is up
    WebDriverWait(browser, 10).until(lambda _: root.get_attribute("data-loaded") == "true")  # and the chats
    return browser


def _rows(driver: Any) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, "#rows tr")


def _names(driver: Any) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#rows td.name .title")]


def _open(driver: Any, name: str) -> Any:
    row = next(r for r in _rows(driver) if r.find_element(By.CSS_SELECTOR, ".title").text == name)
    row.click()
    return driver.find_element(By.ID, "detail")


def test_summary_counts_the_verdicts(page: Any) -> None:
    stats = {e.get_attribute("data-stat"): e.find_element(By.CSS_SELECTOR, ".v").text
             for e in page.find_elements(By.CSS_SELECTOR, "#summary .stat")}
    assert (stats["total"], stats["passed"], stats["failed"], stats["error"]) == ("9", "6", "2", "1")
    assert stats["rate"] == "66.7%"
    facts = page.find_element(By.CSS_SELECTOR, "#top .facts").get_attribute("textContent")
    assert "backend: embedded" in facts and "model: echo, scripted" in facts and "specs/weather.yaml" in facts
    assert "baseline:" in facts and "2 changed" in facts and "1 added" in facts


def test_a_failing_check_shows_expected_and_actual_first_with_its_spec_line(page: Any) -> None:
    detail = _open(page, "sky[repeat=1]")
    turn = detail.find_element(By.CSS_SELECTOR, "#turn-1")
    assert "bad" in turn.get_attribute("class")
    checks = turn.find_elements(By.CSS_SELECTOR, ".checks .check")
    first = checks[0]
    assert "fail" in first.get_attribute("class")  # failed checks come first, though the spec lists status first
    assert 'expected the reply to contain "blue"; reply: "the sky is green"' in first.text
    assert first.find_element(By.CSS_SELECTOR, ".where").text == "specs/sky.yaml:8:19"
    assert "pass" in checks[1].get_attribute("class")
    failures = detail.find_element(By.CSS_SELECTOR, "[data-kind=failures]").get_attribute("textContent")
    assert "1 failure" in failures and "turn 1" in failures


def test_filters_narrow_the_table(page: Any) -> None:
    assert len(_rows(page)) == 9
    page.find_element(By.CSS_SELECTOR, ".chip[data-verdict=failed]").click()
    assert sorted(_names(page)) == ["sky[repeat=1]", "sky[repeat=2]"]
    page.find_element(By.CSS_SELECTOR, ".chip[data-verdict=error]").click()  # a second verdict widens it
    assert len(_rows(page)) == 3
    page.find_element(By.CSS_SELECTOR, ".chip[data-verdict=failed]").click()
    page.find_element(By.CSS_SELECTOR, ".chip[data-verdict=error]").click()
    text = page.find_element(By.ID, "text-filter")
    text.send_keys("21 °C")  # a reply's words
    assert sorted(_names(page)) == ["weather[repeat=1]", "weather[repeat=2]"]
    text.clear()
    text.send_keys("specs/greet")  # the spec path
    assert sorted(_names(page)) == ["greet[repeat=1]", "greet[repeat=2]"]
    text.clear()
    text.send_keys("nothing like this")
    assert _rows(page) == [] and page.find_element(By.ID, "empty").is_displayed()
    text.clear()
    text.send_keys(" ")
    Select(page.find_element(By.ID, "tag-filter")).select_by_value("colours")
    assert sorted(_names(page)) == ["sky[repeat=1]", "sky[repeat=2]"]
    Select(page.find_element(By.ID, "tag-filter")).select_by_value("smoke")
    assert sorted(_names(page)) == ["greet[repeat=1]", "greet[repeat=2]", "outage", "sky[repeat=1]", "sky[repeat=2]"]
    assert page.find_element(By.ID, "match-count").text == "5 of 9"


def test_changed_only_shows_what_changed_since_the_baseline(page: Any) -> None:
    page.find_element(By.ID, "changed-only").click()
    assert sorted(_names(page)) == ["outage", "sky[repeat=1]", "sky[repeat=2]"]  # outage is new
    change = _open(page, "sky[repeat=2]").find_element(By.CSS_SELECTOR, "[data-kind=baseline]")
    text = change.get_attribute("textContent")
    assert "verdict: passed → failed" in text
    assert 'turn 1 contains "blue": passed -> failed' in text
    assert [e.text for e in change.find_elements(By.CSS_SELECTOR, ".diff .del")] == ["-the sky is blue"]
    assert [e.text for e in change.find_elements(By.CSS_SELECTOR, ".diff .add")] == ["+the sky is green"]


def test_columns_sort_both_ways(page: Any) -> None:
    def cells(column: int) -> list[str]:
        return [r.find_elements(By.TAG_NAME, "td")[column].text for r in _rows(page)]

    head = page.find_element(By.CSS_SELECTOR, "#head th[data-key=verdict]")
    assert head.get_attribute("aria-sort") == "ascending"  # the default: errors and failures first
    assert cells(1)[:3] == ["ERROR", "FAILED", "FAILED"]
    page.find_element(By.CSS_SELECTOR, "#head th[data-key=name] button").click()
    names = _names(page)
    assert names == sorted(names, key=str.lower)
    page.find_element(By.CSS_SELECTOR, "#head th[data-key=name] button").click()
    assert _names(page) == sorted(names, key=str.lower, reverse=True)
    assert page.find_element(By.CSS_SELECTOR, "#head th[data-key=name]").get_attribute("aria-sort") == "descending"
    page.find_element(By.CSS_SELECTOR, "#head th[data-key=turns] button").click()
    turns = [int(t) for t in cells(3)]
    assert turns == sorted(turns, reverse=True) and turns[0] == 2


def test_a_conversation_shows_its_turns_and_tool_calls(page: Any) -> None:
    detail = _open(page, "weather[repeat=1]")
    assert len(detail.find_elements(By.CSS_SELECTOR, "section.turn")) == 1
    assert detail.find_element(By.CSS_SELECTOR, ".bubble.user").text.endswith("What is the weather in Paris?")
    call = detail.find_element(By.CSS_SELECTOR, "[data-kind=tool-call]")
    assert "tool call get_weather" in call.text
    assert '"city": "Paris"' in call.text and '"temperature": 21' in call.text
    assert "It is 21 °C there right now." in detail.find_element(By.CSS_SELECTOR, "[data-kind=reply]").text
    assert page.current_url.endswith("#c" + str(int(_selected(page)) + 1))
    detail = _open(page, "sky[repeat=1]")
    assert [e.get_attribute("data-turn") for e in detail.find_elements(By.CSS_SELECTOR, "section.turn")] == ["1", "2"]


def _selected(driver: Any) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#rows tr[aria-selected=true]").get_attribute("data-index")


def test_keys_move_through_the_conversations(page: Any) -> None:
    body = page.find_element(By.TAG_NAME, "body")
    body.send_keys("j")
    first = _selected(page)
    body.send_keys("j")
    assert _selected(page) != first
    body.send_keys("k")
    assert _selected(page) == first


def test_a_conversation_error_is_shown_prominently_as_text(page: Any) -> None:
    detail = _open(page, "outage")
    error = detail.find_element(By.CSS_SELECTOR, "[data-kind=conversation-error]")
    assert error.text == "Conversation error: the backend went away: <b>503</b>"
    assert error.find_elements(By.TAG_NAME, "b") == []


def test_markup_in_a_reply_is_text_and_never_runs(page: Any) -> None:
    Select(page.find_element(By.ID, "tag-filter")).select_by_value("hostile")
    detail = _open(page, "markup[repeat=1]")
    reply = detail.find_element(By.CSS_SELECTOR, "[data-kind=reply]")
    assert reply.text.endswith(XSS)
    assert page.execute_script("return typeof window.pwned") == "undefined"
    assert "pwned" not in page.title
    assert page.find_elements(By.CSS_SELECTOR, "#detail img, #detail script") == []


def test_the_page_makes_no_network_request(page: Any) -> None:
    _open(page, "weather[repeat=1]")
    entries = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [e for e in entries if not e.startswith(("file:", "data:"))] == []
    assert page.execute_script("return document.querySelectorAll('link, iframe, object, embed').length") == 0


def test_run_html_opens_too(browser: Any, suite: Suite) -> None:
    browser.get(suite.html.as_uri())
    assert len(_rows(browser)) == 8
    assert browser.execute_script("return typeof window.pwned") == "undefined"


def test_screenshot(page: Any, tmp_path: Path) -> None:
    _open(page, "sky[repeat=1]")
    page.execute_async_script(  # the chat and its checks in view, painted before the picture is taken
        "const done = arguments[0]; document.getElementById('detail').scrollTop = 330;"
        "requestAnimationFrame(() => requestAnimationFrame(done));")
    shot = tmp_path / "report.png"
    assert page.save_screenshot(str(shot))
    from struct import unpack

    assert unpack(">II", shot.read_bytes()[16:24]) == (1280, 800)  # the PNG's own width and height
    if os.environ.get("RUNNER_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "report.png")


def test_retrieval_turns_show_queries_results_and_citations(browser: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("CI", raising=False)
    run = CliRunner().invoke(cli, ["run", "specs/examples/retrieval.yaml", "-o", str(tmp_path / "t"),
                                   "--cassettes", str(tmp_path / "c"), "--html", str(tmp_path / "r.html")])
    assert run.exit_code == 0, run.output
    browser.get((tmp_path / "r.html").as_uri())
    detail = _open(browser, "retrieval")
    search = detail.find_element(By.CSS_SELECTOR, "#turn-1 [data-kind=file-search]")
    search.click()  # folded until opened: results can be long
    assert "How long is the warranty on my kettle?" in search.text
    assert "warranty.md" in search.text and "score 0.80" in search.text and "two-year warranty" in search.text
    cites = detail.find_element(By.CSS_SELECTOR, "#turn-1 [data-kind=citations]").text
    assert "warranty.md" in cites and "【0:0†warranty.md】" in cites
