"""Generation with the warp generator at full resolution: the photo's own pixels outside the face,
no square seam (trained for two steps on in-memory batches: this checks the plumbing, not quality)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import soundfile as sf

from tests.training.test_tasks import InMemoryData, _tiny
from thflax.training import tasks, trainer

pytestmark = pytest.mark.cli  # trains and generates: minutes, not in the fast tier


@pytest.fixture(scope="module")
def warp_workdir(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("warp_wd"))
    for stage in ("stl", "ltv"):
        config = _tiny(stage)
        config.ltv.generator = "warp_tiny"
        config.stl.num_steps = config.ltv.num_steps = 1
        trainer.train_stage(config, wd, tasks.get_task(config, stage), InMemoryData(config, stage))
    return wd


def test_full_resolution_output_keeps_the_photo_outside_the_face(warp_workdir, tmp_path, monkeypatch):
    from thflax.inference import generation
    from thflax.io import video
    from thflax.io import speech

    def opening_mouth(models, windows, template, still=False, chunk=250, **_):
        """Landmarks whose jaw and lower lip drop and rise (an untrained STL net barely moves them)."""
        t = np.arange(len(windows))
        lm = np.repeat(np.asarray(template, np.float32)[None], len(t), 0)
        drop = 0.03 * (1 - np.cos(2 * np.pi * t / 12.0))[:, None]
        for idx in (list(range(5, 12)) + list(range(55, 60)) + [65, 66, 67]):
            lm[:, idx, 1] += drop[:, 0]
        yield lm

    monkeypatch.setattr(generation, "predict_landmarks", opening_mouth)

    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    utt = speech.synthesize("set red in x five soon", voice="en-us", rate=170, pitch=50)
    wav = tmp_path / "speech.wav"
    sf.write(str(wav), utt.audio, utt.sample_rate)
    out = tmp_path / "out.mp4"
    generation.generate(warp_workdir, str(photo), str(wav), str(out), progress=False)
    frames, _ = video.read_video(str(out))
    img = skimage.data.astronaut().astype(np.float32)
    assert frames.shape[1:] == img.shape
    # Far from the face (the bottom and right of the photo) the output is the photo (up to the video
    # codec), not a re-drawn crop; a pasted 64x64 crop would blur the whole box.
    far = (slice(400, 512), slice(0, 512))
    err_far = np.abs(frames[:, far[0], far[1]].astype(np.float32) - img[far]).mean()
    assert err_far < 4.0, err_far
    # The face region is the network's and the warp's: it changes from frame to frame.
    face = (slice(90, 170), slice(180, 265))
    assert frames[:, face[0], face[1]].astype(np.float32).std(0).mean() > 0.5
