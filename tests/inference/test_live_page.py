"""The web page's Live tab (thflax/inference/live_page.py, live_rtc.py) in a real browser: headless
Chromium whose fake microphone plays a WAV of speech streams it over WebRTC to the app, and the frames
come back as a WebRTC video.

Checked: the browser presents >= 20 frames per second; the mouth opening of the frames sent (their
landmarks, reported per frame on the data channel) follows the loudness of the audio the server
received for those frames (r > 0.3); the latency line is shown; a photo without a face is one line.
The model: the tiny config's STL net trained briefly on the tiny corpus (so the mouth follows speech)
and a random "warp" generator whose attention starts closed (the frames are the photo warped to the
landmarks), exported as a bundle.

Latency and frame rate in numbers are `benchmarks/live.py`'s (BENCHMARKS.md), not this test's.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.test_app import chrome, need_browser, start_app, stop_app, wait_for_error

#: STL steps: enough for the tiny net's mouth to follow the loudness of unseen speech.
STL_STEPS = 150


@pytest.fixture(scope="module")
def live_bundle(tiny_data_dir, tiny_corpus, tmp_path_factory):
    import jax

    from configs import tiny
    from tests.helpers import optimized, train
    from thflax.inference import params
    from thflax.models import build

    c = tiny.get_config()
    c.data.data_dir, c.data.manual_dir = tiny_data_dir, tiny_corpus
    c.stl.num_steps = STL_STEPS
    c.train.eval_every = c.train.checkpoint_every = STL_STEPS
    wd = str(tmp_path_factory.mktemp("live_page_workdir"))
    with optimized():
        train(c, wd, "stl")
    c.ltv.generator = "warp_tiny"
    c.ltv.generator_overrides = {"mask_bias": -4.0}  # as the demo's "warp": the untrained net is the warp
    out = str(tmp_path_factory.mktemp("live_page") / "bundle")
    params.export_variables(c, {"stl": params.load_params(wd, "stl", None)[0],
                                "ltv": build.init_generator(c, jax.random.PRNGKey(1))}, out,
                            source=f"tiny STL {STL_STEPS} steps, random warp generator (tests)")
    return out


def _speech_wav(path: str) -> None:
    """eSpeak NG sentences with pauses (what the fake microphone plays, looped)."""
    import soundfile as sf

    from thflax.io import speech

    parts = []
    for s in ("The quick brown fox jumps over the lazy dog.", "Then it runs back home along the quiet river.",
              "Five blue birds sit on the wall."):
        parts += [speech.synthesize(s).audio, np.zeros(8000, np.float32)]
    sf.write(path, np.concatenate(parts), 16000, subtype="PCM_16")


def _open_live_tab(driver, url: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "return !!window.thflaxLive && !!document.querySelector('#live-tab-button');"))
    driver.find_element(By.CSS_SELECTOR, "#live-tab-button").click()
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return !!document.querySelector('#live-photo input[type=file]') && !!document.querySelector('#live-start');"))


def _start(driver, photo: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#live-photo input[type=file]").send_keys(photo)
    time.sleep(0.5)  # the upload reaches the server before the click asks for it
    driver.find_element(By.CSS_SELECTOR, "#live-start").click()


@pytest.mark.cli
@pytest.mark.browser
def test_live_tab_streams_frames_that_follow_the_fake_microphone(live_bundle, tmp_path):
    import cv2
    import skimage.data

    need_browser()
    import importlib.util
    import os

    if importlib.util.find_spec("aiortc") is None:  # the test extra installs it: in CI its absence fails
        (pytest.fail if os.environ.get("CI") else pytest.skip)("aiortc (the app and test extras) is not installed")
    photo, no_face, wav = (str(tmp_path / n) for n in ("astronaut.png", "bricks.png", "speech.wav"))
    cv2.imwrite(photo, cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(no_face, skimage.data.brick()[:160, :160])
    _speech_wav(wav)
    proc, url = start_app(live_bundle, str(tmp_path / "tmp"), str(tmp_path / "app.log"))
    driver = chrome(extra_args=("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                                f"--use-file-for-fake-audio-capture={wav}"))
    try:
        _open_live_tab(driver, url)
        _start(driver, photo)
        deadline = time.monotonic() + 180  # the first connection compiles the networks
        while time.monotonic() < deadline and driver.execute_script("return window.thflaxLive.presented.length") < 10:
            assert driver.execute_script("return window.thflaxLive.error") is None
            time.sleep(0.5)
        time.sleep(10)
        fps = driver.execute_script("return window.thflaxLive.fps(5.0)")
        stats = driver.execute_script("return window.thflaxLive.stats")
        latency = driver.execute_script("return document.querySelector('#live-latency').innerText")
        assert fps >= 20, (fps, open(tmp_path / "app.log").read()[-2000:])
        assert "latency ≈" in latency and "frames/s" in latency, latency
        live = [s for s in stats if s["compute_ms"] is not None][-200:]
        assert len(live) >= 150, len(live)
        mouth = np.array([s["mouth"] for s in live])
        db = np.array([s["db"] for s in live])
        db = np.maximum(db, db.max() - 60)
        r = float(np.corrcoef(mouth, db)[0, 1])
        print(f"live tab: {fps:.1f} frames/s presented; mouth opening vs loudness r = {r:.2f}; {latency}")
        assert r > 0.3, r
        driver.find_element("css selector", "#live-stop").click()
        # A photo without a face: one line on the page (a fresh page: the photo box is empty again).
        _open_live_tab(driver, url)
        _start(driver, no_face)
        message = wait_for_error(driver, "no face")
        assert "\n" not in message.strip() and "Traceback" not in message
    finally:
        driver.quit()
        assert stop_app(proc) == 0
