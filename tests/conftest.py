"""Shared fixtures: a tiny synthetic corpus, its prepared TFDS dataset and a tiny trained model, built
once per test run (under pytest-xdist the first worker that needs one builds it, the others wait and
reuse it: `shared_dir`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests compile far more than they run: XLA's optimisation passes cost more compile time than they
# save at run time here (figures in BENCHMARKS.md). Set in the environment, so the programs the tests
# start in subprocesses inherit it; the learning tests turn them back on (`tests.helpers.optimized`).
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import pytest  # noqa: E402

# aiortc's SRTP library (pylibsrtp, the web page's Live tab) crashes in its init when imported after
# TensorFlow, whose BoringSSL symbols are global in the process; imported first it works (and TF after
# it). Tests of both kinds share worker processes, so it is loaded here, before any test imports TF.
import importlib.util  # noqa: E402

if importlib.util.find_spec("pylibsrtp") is not None:
    import pylibsrtp  # noqa: E402,F401

#: Fixtures that build the synthetic corpus (minutes on 2 cores): tests using them are marked `corpus`.
CORPUS_FIXTURES = {"tiny_corpus", "tiny_data_dir", "tiny_config", "learn_corpus", "learn_config", "workdir",
                   "tiny_workdir", "gen_workdir"}


#: Test files that take longest (minutes on one worker; the learning tests ~15), collected first: with
#: `-n auto --dist loadfile` each file goes whole to one worker in collection order, so starting the
#: longest first keeps both workers busy to the end instead of one finishing the learning tests alone.
LONGEST_FIRST = ("test_learning.py", "test_train_loop.py", "test_multihost.py", "test_app.py", "test_tasks.py",
                 "test_parallel.py")


def pytest_collection_modifyitems(items):
    for item in items:
        if CORPUS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.corpus)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise


def shared_dir(tmp_path_factory, worker_id: str, name: str, build: Callable[[str], None]) -> str:
    """A folder made by `build(path)` once per test run.

    Without xdist (`worker_id` "master") it is a fresh folder of this session. Under xdist every worker
    is a session of its own, and the folders are built in the run's common temporary root under a file
    lock: the first worker builds, the others wait for it and reuse the result (a `.done` marker
    tells a finished build from one that failed half-way, which is rebuilt).
    """
    if worker_id == "master":
        path = str(tmp_path_factory.mktemp(name))
        build(path)
        return path
    from filelock import FileLock

    path = os.path.join(str(tmp_path_factory.getbasetemp().parent), name)
    with FileLock(path + ".lock"):
        if not os.path.exists(os.path.join(path, ".done")):
            shutil.rmtree(path, ignore_errors=True)
            os.makedirs(path)
            build(path)
            open(os.path.join(path, ".done"), "w").close()
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, worker_id) -> str:
    """2 speakers x 6 utterances of the synthetic corpus (GRID layout)."""
    from thflax.synthetic import corpus

    return shared_dir(tmp_path_factory, worker_id, "tiny_corpus", lambda out: corpus.generate_corpus(
        out, num_speakers=2, utterances_per_speaker=6, seed=0, progress=False))


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory, worker_id, tiny_corpus) -> str:
    """TFDS data_dir holding synthetic_talking_heads/tiny prepared from `tiny_corpus`."""
    from input_pipeline import pipeline
    from tests.helpers import data_config

    return shared_dir(tmp_path_factory, worker_id, "tfds", lambda data_dir: pipeline.get_builder(data_config(
        name="synthetic_talking_heads/tiny", data_dir=data_dir, manual_dir=tiny_corpus, num_workers=1)))


@pytest.fixture
def tiny_config(tiny_data_dir, tiny_corpus):
    """configs/tiny.py pointed at the prepared tiny dataset."""
    from configs import tiny

    c = tiny.get_config()
    c.data.data_dir = tiny_data_dir
    c.data.manual_dir = tiny_corpus
    return c


@pytest.fixture(scope="session", autouse=True)
def thflax_cache_dir(tmp_path_factory) -> str:
    """generate.py's start-up caches (compiled programs, faces) in a folder of this test session.

    Tests then neither read nor fill the user's ~/.cache/thflax; the session's later runs of
    generate.py reuse what its earlier ones compiled.
    """
    old = os.environ.get("THFLAX_CACHE_DIR")
    path = str(tmp_path_factory.mktemp("thflax_cache"))
    os.environ["THFLAX_CACHE_DIR"] = path
    yield path
    if old is None:
        os.environ.pop("THFLAX_CACHE_DIR", None)
    else:
        os.environ["THFLAX_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_workdir(tiny_data_dir, tiny_corpus, tmp_path_factory, worker_id) -> str:
    """Both stages of configs/tiny.py trained for 10 steps on the tiny dataset (for generation tests)."""
    from configs import tiny
    from tests.helpers import train_all

    cfg = tiny.get_config()
    cfg.data.data_dir = tiny_data_dir
    cfg.data.manual_dir = tiny_corpus
    cfg.stl.num_steps = 10
    cfg.ltv.num_steps = 10
    return shared_dir(tmp_path_factory, worker_id, "tiny_workdir", lambda wd: train_all(cfg, wd))


@pytest.fixture(scope="module")
def utterance():
    """A GRID sentence spoken by eSpeak NG with silence around it (speech, visemes, renderer, head motion)."""
    from thflax.io import speech
    from thflax.synthetic import grammar

    words = ["place", "blue", "by", "m", "five", "again"]
    return speech.synthesize(grammar.spoken_text(words), "en-us", 165, 50, labels=words,
                             leading_silence=0.4, trailing_silence=0.35)


@pytest.fixture(scope="module")
def speaker():
    """One synthetic speaker (seed 1234)."""
    from thflax.synthetic import speakers

    return speakers.make_speaker(1234)


@pytest.fixture(scope="module")
def clip(speaker, utterance):
    """`utterance` rendered for `speaker` (renderer.Clip)."""
    import numpy as np

    from thflax.synthetic import renderer

    return renderer.render_clip(speaker, utterance, rng=np.random.default_rng(7))


@pytest.fixture(scope="module")
def landmarker():
    """dlib's face detector and 68-point predictor (thflax/face/landmarks.py)."""
    from thflax.face import landmarks

    return landmarks.FaceLandmarker()


@pytest.fixture(scope="module")
def moving_clip():
    """A 256x256 clip of the real photo panning and zooming slowly (60 frames)."""
    import numpy as np
    import skimage.data

    from thflax.face import crop

    img = skimage.data.astronaut()
    box = crop.CropBox(110, 10, 240)
    frames = []
    for t in range(60):
        b = crop.CropBox(box.x0 + 12 * np.sin(t / 9), box.y0 + 6 * np.cos(t / 7), box.side * (1 + 0.05 * np.sin(t / 13)))
        frames.append(crop.crop(img, b, 256))
    return np.stack(frames)
