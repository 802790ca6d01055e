import numpy as np
import pytest
import skimage.data

from thflax.face import crop, landmarks
from thflax.io import video
from thflax.errors import ImageError, NoFaceError, VideoError


@pytest.fixture(scope="module")
def landmarker():
    return landmarks.FaceLandmarker()


@pytest.fixture(scope="module")
def moving_clip():
    """A 256x256 clip of the real photo panning and zooming slowly (60 frames)."""
    img = skimage.data.astronaut()
    box = crop.CropBox(110, 10, 240)
    frames = []
    for t in range(60):
        b = crop.CropBox(box.x0 + 12 * np.sin(t / 9), box.y0 + 6 * np.cos(t / 7), box.side * (1 + 0.05 * np.sin(t / 13)))
        frames.append(crop.crop(img, b, 256))
    return np.stack(frames)


def test_image_landmarks_on_real_photo(landmarker):
    lm = landmarker.image_landmarks(skimage.data.astronaut())
    assert lm.shape == (68, 2)
    # The face is at (175,76)-(265,166) (NOTES.md); the nose tip lies inside it.
    assert 175 < lm[30, 0] < 265 and 76 < lm[30, 1] < 166


def test_no_face_raises(landmarker):
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError):
        landmarker.image_landmarks(noise)


def test_tracking_matches_per_frame_detection(landmarker, moving_clip):
    stats = landmarks.TrackStats()
    tracked = landmarker.track(moving_clip, stats)
    assert tracked.shape == (60, 68, 2) and np.all(np.isfinite(tracked))
    assert stats.detections <= 2 and stats.missing == 0  # detection ran once, tracking did the rest
    ref = np.stack([landmarker.image_landmarks(f) for f in moving_clip[::10]])
    err = np.linalg.norm(tracked[::10] - ref, axis=-1).mean()
    print(f"tracked vs detected: {err:.2f} px mean")
    assert err < 2.0


def test_tracking_marks_faceless_frames_and_recovers(landmarker, moving_clip):
    clip = moving_clip.copy()
    clip[20:26] = np.random.default_rng(1).integers(0, 255, clip[20:26].shape, dtype=np.uint8)
    tracked = landmarker.track(clip)
    missing = ~np.all(np.isfinite(tracked), axis=(1, 2))
    assert missing[20:26].sum() >= 4  # noise frames are (mostly) caught by the plausibility checks
    assert not missing[:20].any() and not missing[30:].any()


def test_fill_gaps_and_longest_run():
    lm = np.zeros((10, 68, 2), np.float32) + np.arange(10, dtype=np.float32)[:, None, None]
    lm[3:5] = np.nan  # short gap: interpolated
    lm[7:10] = np.nan  # trailing gap: stays missing
    filled, valid = landmarks.fill_gaps(lm, max_gap=2)
    np.testing.assert_allclose(filled[3:5, 0, 0], [3, 4])
    assert valid.tolist() == [True] * 7 + [False] * 3
    assert landmarks.longest_valid_run(valid) == (0, 7)



def test_interpolate_missing_fills_every_gap_and_holds_the_ends():
    lm = np.zeros((10, 68, 2), np.float32) + np.arange(10, dtype=np.float32)[:, None, None]
    lm[[0, 3, 4, 7, 8, 9]] = np.nan
    lm[5, 10, 1] = np.nan  # one missing value makes the whole frame missing
    filled = landmarks.interpolate_missing(lm)
    assert filled.dtype == np.float64 and filled.shape == lm.shape
    np.testing.assert_allclose(filled[:, 0, 0], [1, 1, 2, 3, 4, 5, 6, 6, 6, 6])
    series = np.array([np.nan, 1.0, np.nan, 3.0])
    np.testing.assert_array_equal(landmarks.interpolate_missing(series), [1, 1, 2, 3])
    assert np.isnan(landmarks.interpolate_missing(np.full(3, np.nan))).all()
    assert landmarks.interpolate_missing(np.zeros((0, 68, 2))).shape == (0, 68, 2)


def test_smoothing_reduces_jitter_but_keeps_motion():
    t = np.arange(50, dtype=np.float32)
    motion = 10 * np.sin(t / 8)
    rng = np.random.default_rng(0)
    lm = np.repeat(motion[:, None, None], 68, 1).repeat(2, 2) + rng.normal(0, 1, (50, 68, 2)).astype(np.float32)
    sm = landmarks.smooth(lm)
    assert np.abs(sm - motion[:, None, None]).mean() < 0.8 * np.abs(lm - motion[:, None, None]).mean()


def test_clip_box_is_stable_and_covers_face(landmarker, moving_clip):
    tracked = landmarker.track(moving_clip)
    box = crop.clip_box(tracked)
    norm = box.to_crop(tracked)
    assert norm.min() > 0.1 and norm.max() < 0.9  # the whole face inside the crop, with margin
    np.testing.assert_allclose(box.to_frame(norm), tracked, atol=1e-3)
    c = crop.crop(moving_clip[0], box, 64)
    assert c.shape == (64, 64, 3) and c.dtype == np.uint8


def test_paste_puts_crop_back(moving_clip):
    frame = moving_clip[0]
    box = crop.CropBox(60, 50, 120)
    c = crop.crop(frame, box, 120)
    back = crop.paste(np.zeros_like(frame), c, box, feather=0.0)
    np.testing.assert_allclose(back[60:160, 70:170].astype(int), frame[60:160, 70:170].astype(int), atol=3)
    assert back[:40].max() == 0  # outside the box untouched


def test_video_round_trip_and_atomic_writes(tmp_path, moving_clip):
    path = tmp_path / "v.mp4"
    n = video.write_video(str(path), moving_clip[:30], fps=25)
    frames, fps = video.read_video(str(path))
    assert n == 30 and frames.shape == (30, 256, 256, 3) and fps == 25
    assert np.abs(frames.astype(int) - moving_clip[:30]).mean() < 6  # H.264, good quality
    bad = tmp_path / "bad.mp4"
    with pytest.raises(RuntimeError):
        with video.VideoWriter(str(bad), 25) as w:
            w.write(moving_clip[0])
            raise RuntimeError("generator crashed")
    assert not bad.exists() and not list(tmp_path.glob(".thflax-*"))  # no half-written file left


@pytest.mark.parametrize("audio_seconds", [0.6, 1.19, 1.5])
def test_muxed_video_keeps_every_frame_and_lasts_as_long_as_the_frames(tmp_path, moving_clip, audio_seconds):
    import soundfile as sf

    wav = str(tmp_path / "a.wav")
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(int(16000 * audio_seconds))).astype(np.float32),
             16000)
    path = str(tmp_path / "v.mp4")
    # Audio shorter than, about as long as, and longer than the 29 frames (1.16 s): all frames are kept
    # (ffmpeg's -shortest sometimes dropped the last one) and the audio never outlasts the frames.
    assert video.write_video(path, moving_clip[:29], fps=25, audio_path=wav) == 29
    assert len(video.read_video(path)[0]) == 29
    import imageio_ffmpeg
    import subprocess

    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True,
                           text=True).stderr
    hh, mm, ss = probe.split("Duration: ")[1].split(",")[0].split(":")
    assert "Audio:" in probe and float(ss) <= 29 / 25 + 0.03, probe


def test_video_and_image_errors(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        video.read_video(str(tmp_path / "nope.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(VideoError):
        video.read_video(str(junk))
    with pytest.raises(ImageError, match="not a readable image"):
        video.read_image(str(junk))
