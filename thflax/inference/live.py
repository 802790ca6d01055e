"""Live: speech in, video out as it is spoken. A streaming session over generation's own pieces.

    session = LiveSession.from_photo(models, "face.jpg")
    session.warmup()                          # compile before the audio starts
    for chunk in audio_chunks:                # float32, 16 kHz mono, chunks of any size
        for frame in session.push(chunk):     # LiveFrame: index, image [H, W, 3] uint8, landmarks
            show(frame.image)
    for frame in session.flush(): ...         # the stream ended: the frames it still covers

Each push: causal MFCC windows (`thflax.io.audio_stream.WindowStream`) for the video frames whose
audio is now complete; the STL net one frame at a time with its GRU state carried over
(`networks.model_predictor`, offline generation's jit and head gain); blinks decided from the audio so far
(`blinks.BlinkStream`, so they go on through silence); a slow idle sway of the head
(`head_sway`: the STL net's head stands still in silence); the generator decoding the new frames together
with the reference encoded once (`networks.ltv_functions`); each crop pasted into the photo as offline
(`generation.compose_frame`).

What it equals: the frames are those of the offline path (`predict_landmarks`, `render_frames`,
`compose_frame`) fed the causal features, sway and blinks of the whole utterance
(`audio_stream.causal_windows`, `head_sway.sway_poses`, `blinks.causal_blink_closure`), however the
audio is chunked. They
are not `generate`'s, whose CMVN and pause threshold read the whole file in advance.

Latency: frame t (showing [t/fps, (t+1)/fps)) comes out of the push that brings sample
`samples_needed(t)`: at 25 fps, 640 t + 2016 samples, i.e. 126 ms of audio past the frame's start
(`lookahead_seconds`: the window's last MFCC frame is centred 90 ms after the frame's centre, which is
20 ms after its start, and needs 16 ms, half an STFT frame, of samples beyond); then the compute of that
push.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from thflax.errors import AudioError, InputError
from thflax.inference import head_sway, networks
from thflax.inference.blinks import DEFAULT_BLINK_RATE, BlinkStream, apply_blinks
from thflax.inference.generation import compose_frame
from thflax.inference.options import check_frame, check_options
from thflax.inference.photo import Reference, detect_face
from thflax.io import audio_stream

__all__ = ["LiveFrame", "LiveSession"]


@dataclasses.dataclass
class LiveFrame:
    """One frame of a live video."""

    index: int  # frame t shows the speech of [t / fps, (t + 1) / fps)
    image: np.ndarray  # [H, W, 3] uint8
    landmarks: np.ndarray  # [68, 2] normalised crop coordinates (blinks included)
    samples_needed: int  # the stream's samples this frame waited for (from the stream's start)


class LiveSession:
    """Audio pushed in chunks -> the video frames it completes (see the module docstring).

    Args:
      models: loaded networks (`networks.load_models`).
      reference: the photo prepared as in training (`photo.prepare_reference`); `from_photo` reads a file.
      fps: frame rate (1..120).
      still: no head motion (the template head; lips only; no sway).
      blink_rate, blink_seed: blinks per minute (0: none) and their randomness (`blinks.BlinkStream`),
        which also seeds the sway.
      sway: the idle head motion's amplitude (`head_sway`; 1: its default, 0: none).
      crop_only, landmarks_video, size: the frame as `generate` makes it (`compose_frame`).
      max_batch: the most frames decoded in one generator call; a push that completes more frames runs
        several. Calls are padded to a power of two up to it, so at most log2(max_batch) + 1 shapes
        compile (`warmup` compiles them all).
    """

    def __init__(self, models: networks.Models, reference: Reference, *, fps: float = 25.0, still: bool = False,
                 blink_rate: float = DEFAULT_BLINK_RATE, blink_seed: int = 0, sway: float = 1.0,
                 crop_only: bool = False, landmarks_video: bool = False, size: int | None = None, max_batch: int = 4):
        check_options(fps=fps, size=size, batch=max_batch, blink_rate=blink_rate, blink_seed=blink_seed)
        self.models = models
        self.reference = reference
        self.fps = float(fps)
        self.still = still
        self.crop_only, self.landmarks_video, self.size = crop_only, landmarks_video, size
        self.max_batch = int(max_batch)
        if not (isinstance(sway, (int, float)) and 0.0 <= sway <= 5.0):
            raise InputError(f"sway must be a number in 0..5, not {sway!r}")
        self.sway, self.seed = (0.0 if still else float(sway)), int(blink_seed)
        self.mfcc_config = models.mfcc_config
        self.sample_rate = self.mfcc_config.sample_rate
        self._windows = audio_stream.WindowStream(self.fps, self.mfcc_config)
        self._blinks = BlinkStream(self.fps, blink_rate, blink_seed, self.sample_rate) if blink_rate > 0 else None
        self._stl = networks.model_predictor(models, still)
        _, self._decode = networks.ltv_functions(models)
        self._features = networks.encode_reference(models, reference.crop, reference.template)
        import jax.numpy as jnp

        self._template = jnp.asarray(np.asarray(reference.template, np.float32)[None])
        self._carry = None
        self.num_samples = 0
        self.num_frames = 0  # emitted so far
        self.ended = False

    @classmethod
    def from_photo(cls, models: networks.Models, image: str, *, face_index: int | None = None,
                   face_box: tuple[int, int, int, int] | None = None, **kwargs: Any) -> "LiveSession":
        """A session for the face in the photo file `image` (chosen as `generate` does; a photo without
        a face raises `NoFaceError`, one line)."""
        check_options(face_index=face_index, face_box=face_box)
        size = kwargs.get("size")
        face = detect_face(image, face_index=face_index, face_box=face_box, size=size)
        check_frame(*face[0].shape[:2], size, kwargs.get("crop_only", False), kwargs.get("landmarks_video", False))
        return cls(models, Reference.from_face(*face, models.image_size), **kwargs)

    def samples_needed(self, frame: int) -> int:
        """Samples (from the stream's start) after which `push` returns frame `frame`."""
        need = audio_stream.samples_needed(frame, self.fps, self.mfcc_config)
        if self._blinks is not None:
            need = max(need, self._blinks.samples_needed(frame))
        return need

    @property
    def lookahead_seconds(self) -> float:
        """Audio past a frame's start that it waits for (the latency's bound before any compute)."""
        return max(self.samples_needed(t) - t * self.sample_rate / self.fps for t in range(100)) / self.sample_rate

    def warmup(self) -> None:
        """Compiles the STL step and every decode shape now (on dummy inputs; the session's state is
        untouched), so the first frames of the stream do not wait for XLA."""
        import jax

        c = self.mfcc_config
        x = np.zeros((1, 1, c.window, c.n_mfcc), np.float32)
        _, carry = self._stl(self.models.stl_variables, x, self._template, None)
        jax.block_until_ready(self._stl(self.models.stl_variables, x, self._template, carry))
        b = 1
        while True:
            lms = np.repeat(np.asarray(self.reference.template, np.float32)[None], b, 0)
            jax.block_until_ready(self._decode(self.models.generator_variables, self._features, lms))
            if b >= self.max_batch:
                break
            b = min(2 * b, self.max_batch)

    def push(self, samples: np.ndarray) -> list[LiveFrame]:
        """Appends 16 kHz mono samples [n] (float32 in [-1, 1]); returns the frames they complete, in order."""
        if self.ended:
            raise InputError("the live stream has ended; start a new session")
        x = np.asarray(samples, np.float32).reshape(-1)
        if not np.all(np.isfinite(x)):
            raise AudioError("live audio: contains NaN or infinite samples")
        self.num_samples += len(x)
        if self._blinks is not None:
            self._blinks.push(x)
        self._windows.append(x)
        ready = 0  # the MFCC window bounds the wait; a short window may leave the blinks' RMS window longer
        while self.samples_needed(self.num_frames + ready) <= self.num_samples:
            ready += 1
        return self._frames(self._windows.take(ready), ended=False)

    def flush(self) -> list[LiveFrame]:
        """Ends the stream: the frames the audio still covers (`num_video_frames` of all samples)."""
        if self.ended:
            return []
        self.ended = True
        self._windows.end()
        return self._frames(self._windows.take(self._windows.available()), ended=True)

    def _frames(self, windows: np.ndarray, ended: bool) -> list[LiveFrame]:
        if len(windows) == 0:
            return []
        import jax.numpy as jnp

        landmarks = []
        for w in windows:  # one step at a time: the carry after exactly this frame
            lm, self._carry = self._stl(self.models.stl_variables, jnp.asarray(w[None, None]), self._template,
                                        self._carry)
            landmarks.append(np.asarray(lm[0, 0]))
        lms = np.stack(landmarks)
        if self.sway > 0:
            index = np.arange(self.num_frames, self.num_frames + len(lms))
            lms = head_sway.apply_sway(lms, head_sway.sway_poses(index, self.fps, self.seed, self.sway))
        if self._blinks is not None:
            closure = np.asarray([self._blinks.next_closure(ended) for _ in range(len(lms))], np.float32)
            lms = apply_blinks(lms, closure)
        out = []
        for s in range(0, len(lms), self.max_batch):
            group = lms[s:s + self.max_batch]
            n = len(group)
            padded = 1 << (n - 1).bit_length()  # the next power of two (at most max_batch: shapes compiled)
            padded = min(padded, self.max_batch)
            if padded > n:
                group = np.concatenate([group, np.repeat(group[-1:], padded - n, 0)])
            imgs, masks = self._decode(self.models.generator_variables, self._features, jnp.asarray(group))
            imgs, masks = np.asarray(imgs), np.asarray(masks)
            for i in range(n):
                t = self.num_frames
                image = compose_frame(self.models, self.reference, imgs[i], group[i], masks[i],
                                      crop_only=self.crop_only, landmarks_video=self.landmarks_video, size=self.size)
                out.append(LiveFrame(t, image, group[i], self.samples_needed(t)))
                self.num_frames += 1
        return out
