"""The web page in a real browser: Debian's headless Chromium driven by Playwright (no
browser download), against the real server over a real index of real speech."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

import speechrag
from speechrag.segment import SegmenterConfig
from tests.test_server import start, stop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, speech_dir: Path) -> Iterator[str]:
    ix = tmp_path_factory.mktemp("web") / "ix"
    speechrag.index_audio([speech_dir], ix, model="cascade-tiny",
                          segmenter=SegmenterConfig.of(10, 5))
    proc, url = start(ix, "--llm", "smollm2-135m")
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        pytest.skip("no chromium: `apt-get install chromium` (make install does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", "--no-sandbox"])
        yield b
        b.close()


def test_type_a_question_see_the_moments_and_play_one(browser, page_url: str,
                                                     speech_dir: Path) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 800})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_url)
    page.wait_for_function("document.getElementById('summary').textContent.includes('recordings')")
    assert "3 recordings" in page.text_content("#summary")
    page.fill("#q", "Which instrument has four strings?")
    page.press("#q", "Enter")
    page.wait_for_selector("#hits li .source")
    first = page.locator("#hits li").first
    assert first.locator(".source").text_content() == "violin.wav"
    span = first.locator(".span").text_content()
    assert span and "–" in span and span.startswith("00:")
    assert first.locator("mark").count() >= 1  # the question's words marked in the text
    # keyboard: focus the play button and press Enter
    first.locator("button.play").focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(() => { const a = document.getElementById('player');"
        " return a.currentTime > 0.2 || a.ended; })()", timeout=30000)
    src = page.eval_on_selector("#player", "a => a.src")
    assert "/api/segments/" in src and src.endswith("/audio")
    # the hit is 00:00 to 00:10 of a shorter file: what plays is exactly that moment
    length = sf.info(str(speech_dir / "violin.wav")).duration
    assert page.eval_on_selector("#player", "a => a.duration") == pytest.approx(
        min(length, 10.0), abs=0.05)
    assert "playing" in (first.get_attribute("class") or "")
    shot = os.environ.get("SPEECHRAG_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)
    assert not errors


def test_the_answer_streams_into_the_page(browser, page_url: str) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(page_url)
    page.wait_for_selector("#ask-button:not([hidden])")
    page.fill("#q", "What is bread made from?")
    page.click("#ask-button")
    page.wait_for_function("document.getElementById('answer-meta').textContent"
                           ".includes('done after')", timeout=60000)
    assert page.text_content("#answer").strip() not in ("", "…")
    assert page.locator("#hits li").count() == 3  # k = 5 over an index of 3 segments


def test_errors_are_shown_as_readable_messages(browser, page_url: str) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(page_url)
    page.click("#search-button")  # nothing typed
    assert page.text_content("#error") == "Type a question first."
    page.fill("#q", "x" * 1000)
    page.evaluate("document.getElementById('q').value = 'why '.repeat(400)")
    page.press("#q", "Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "HTTP" in page.text_content("#error")


def test_a_recorded_question_is_sent_and_answered(browser, page_url: str) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(page_url)
    page.wait_for_selector("#ask-button:not([hidden])")
    page.evaluate("document.getElementById('ask-button').hidden = true")  # search, not ask
    with page.expect_response(lambda r: r.url.endswith("/api/search")
                              and r.request.method == "POST", timeout=60000) as response:
        page.click("#record-button")
        page.wait_for_timeout(1500)  # Chromium's fake microphone plays a tone
        page.click("#record-button")
    assert response.value.status in (200, 400)  # a tone may hold no words: either is said
    if response.value.status == 200:
        page.wait_for_selector("#hits li")
    else:
        page.wait_for_selector("#error:not([hidden])")
