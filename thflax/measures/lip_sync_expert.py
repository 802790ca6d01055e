"""LSE-D and LSE-C (Prajwal et al. 2020, Wav2Lip's evaluation protocol) and SyncNet's A/V offset, computed
as syncnet_python's `SyncNetInstance.evaluate` does, with a lip-sync expert (`thflax.models.syncnet`).

Per video of T frames: every window of 5 frames starting at v = 0 … T-6 (syncnet_python's loop stops one
window short of the last; kept, so counts match) is embedded, and so is the 0.2 s of speech that goes with
it. For each offset k in -15 … 15 frames (`VSHIFT`, Wav2Lip's setting) d[v, k] = ||video_v - audio_{v+k}||,
with the audio embeddings past either end taken as zeros (calc_pdist's padding); the mean over windows
gives one distance per offset, and

  LSE-D = its minimum over offsets (lower: closer to the speech),
  LSE-C = its median over offsets minus that minimum (higher: the best offset stands out),
  offset = the best offset, + = the video lags the audio (vshift - argmin, syncnet_python's AV offset).

A video whose mouth does not move has the same distance at every offset: LSE-C near 0, and an LSE-D that
is only the typical distance. Papers' LSE-C/D use the public weights (`syncnet_v2.model`); the expert trained
here (`thflax.training.syncnet_stage`) has its own scale, so its figures compare the rows of one table, with
the real video and the copied frame for scale, but are not comparable with published ones. (A generated
mouth can score better than the real one: the demo's model did, BENCHMARKS.md.)

Two kinds of experts (`Expert.public`):
  * trained here: reads the mouth region of this project's face crops (`config.syncnet.region`) and the
    dataset's own MFCC windows (librosa, per-utterance CMVN; the first 13 coefficients);
  * the public weights (converted with `python -m thflax.inference.syncnet_weights`): read the face crop
    resized to 224x224 in BGR 0..255 (`syncnet.PUBLIC_INPUT`, syncnet_python's framing approximated) and
    python_speech_features' MFCC of the raw 16-bit samples, as syncnet_python does.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import numpy as np

from thflax.errors import InputError
from thflax.models import syncnet

#: Offsets searched, in frames each way (Wav2Lip's evaluation runs syncnet_python with --vshift 15).
VSHIFT = 15
#: Windows embedded per call (padded to it, so each input size compiles once).
CHUNK = 64


def offset_distances(video: np.ndarray, audio: np.ndarray, vshift: int = VSHIFT) -> np.ndarray:
    """d [N, 2·vshift + 1]: d[v, j] = ||video[v] - audio[v + j - vshift]||, zero audio past either end.

    video, audio: [N, E] embeddings of the same N windows. (PyTorch's pairwise_distance, which
    calc_pdist uses, adds 1e-6 to the difference; so does this.)"""
    video, audio = np.asarray(video, np.float64), np.asarray(audio, np.float64)
    n = len(video)
    padded = np.concatenate([np.zeros((vshift, audio.shape[1])), audio, np.zeros((vshift, audio.shape[1]))])
    idx = np.arange(n)[:, None] + np.arange(2 * vshift + 1)[None, :]
    return np.linalg.norm(video[:, None, :] - padded[idx] + 1e-6, axis=-1)


def scores(dists: np.ndarray, vshift: int = VSHIFT) -> dict[str, float]:
    """LSE-D, LSE-C and the offset (frames, + = the video lags the audio) of `offset_distances`' d;
    NaN for a video with no window."""
    if len(dists) == 0:
        return {"lse_d": float("nan"), "lse_c": float("nan"), "lse_offset": float("nan")}
    mean = np.mean(dists, axis=0)
    best = int(np.argmin(mean))
    return {"lse_d": float(mean[best]), "lse_c": float(np.median(mean) - mean[best]),
            "lse_offset": float(vshift - best)}


def num_windows(num_frames: int) -> int:
    """How many windows syncnet_python scores in a video of `num_frames` frames (T - 5)."""
    return max(num_frames - syncnet.FRAMES, 0)


@dataclasses.dataclass(frozen=True)
class Expert:
    """A lip-sync expert: the network, its variables, what it reads, and a name for the tables."""

    name: str
    model: syncnet.SyncNet
    variables: Any
    spec: syncnet.InputSpec
    public: bool = False
    n_mfcc: int = syncnet.N_MFCC
    #: The face crops it reads best (videos of other sizes are cropped to it): the corpus's for one trained
    #: here (`config.ltv.image_size`, which equals the dataset's crop), 256 for the public net's 224.
    crop_size: int = 256

    @functools.cached_property
    def _video_fn(self):
        import jax

        return jax.jit(lambda v, x: self.model.apply(v, syncnet.video_input(x, self.spec),
                                                     method=syncnet.SyncNet.embed_video))

    @functools.cached_property
    def _audio_fn(self):
        import jax

        return jax.jit(lambda v, x: self.model.apply(v, x, method=syncnet.SyncNet.embed_audio))

    def _chunked(self, fn, x: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(x), CHUNK):
            part = x[i:i + CHUNK]
            pad = CHUNK - len(part)
            if pad:
                part = np.concatenate([part, np.repeat(part[-1:], pad, 0)])
            out.append(np.asarray(fn(self.variables, part))[:CHUNK - pad])
        return np.concatenate(out) if out else np.zeros((0, self.model.embed_features), np.float32)

    def embed_video(self, frames: np.ndarray) -> np.ndarray:
        """Face crops [T, S, S, 3] uint8 (RGB) -> one embedding per window [T - 5, E]."""
        n = num_windows(len(frames))
        if n == 0:
            return np.zeros((0, self.model.embed_features), np.float32)
        return self._chunked(self._video_fn, syncnet.windows(np.asarray(frames), n, syncnet.FRAMES))

    def audio_windows(self, num_frames: int, mfcc: np.ndarray | None = None, audio: np.ndarray | None = None,
                      sample_rate: int = 16000, fps: float = 25.0) -> np.ndarray:
        """The audio tower's input for each window [T - 5, n_mfcc, 20].

        Trained here: from the dataset's per-frame MFCC windows `mfcc` [T, 20, n] (the middle frame's, v+2:
        its 20 MFCC frames span the five frames), or computed from `audio` as the dataset does. Public: from
        `audio` (16 kHz samples, int16 or float in [-1, 1]) with python_speech_features, MFCC frames
        4v … 4v+19 as syncnet_python slices them.
        """
        n = num_windows(num_frames)
        if self.public:
            if audio is None:
                raise ValueError("the public SyncNet reads the speech's samples: pass audio")
            return public_audio_windows(audio, n, sample_rate)
        if mfcc is None:
            if audio is None:
                raise ValueError("pass mfcc windows or audio")
            from thflax.io import audio as audio_lib

            speech = np.asarray(audio)
            speech = speech.astype(np.float32) / 32768.0 if speech.dtype == np.int16 else speech.astype(np.float32)
            mfcc = audio_lib.frame_windows(audio_lib.mfcc(speech), num_frames, fps)
        mfcc = np.asarray(mfcc, np.float32)
        if len(mfcc) < num_frames:
            raise ValueError(f"{len(mfcc)} MFCC windows for {num_frames} frames")
        return np.transpose(mfcc[syncnet.FRAMES // 2: syncnet.FRAMES // 2 + n, :, :self.n_mfcc], (0, 2, 1))

    def measure(self, frames: np.ndarray, mfcc: np.ndarray | None = None, audio: np.ndarray | None = None,
                sample_rate: int = 16000, fps: float = 25.0, vshift: int = VSHIFT) -> dict[str, float]:
        """{"lse_d", "lse_c", "lse_offset"} of face crops [T, S, S, 3] uint8 and their speech: `mfcc` windows
        [T, 20, n] (trained here) and/or the samples `audio` [T·sample_rate/fps] (needed by the public net)."""
        frames = np.asarray(frames)
        if abs(fps - 25.0) > 1e-3:
            raise InputError(f"SyncNet reads 25 fps video (5 frames = 0.2 s of speech); this one has {fps:g} fps")
        v = self.embed_video(frames)
        a = self._chunked(self._audio_fn, self.audio_windows(len(frames), mfcc, audio, sample_rate, fps))
        return scores(offset_distances(v, a, vshift), vshift)


def public_audio_windows(audio: np.ndarray, count: int, sample_rate: int = 16000) -> np.ndarray:
    """python_speech_features' MFCC (13 coefficients, 10 ms hop, of the 16-bit samples, as syncnet_python
    reads a wav) in windows of 20 frames starting every 4: [count, 13, 20]."""
    try:
        import python_speech_features
    except ImportError as e:
        raise InputError("the public SyncNet's audio features need python_speech_features: "
                         "pip install -e '.[sync-reference]'") from e
    samples = np.asarray(audio)
    if samples.dtype != np.int16:  # float in [-1, 1] -> the wav's integers
        samples = np.clip(np.round(samples * 32768.0), -32768, 32767)
    mfcc = np.asarray(python_speech_features.mfcc(samples.astype(np.float64), sample_rate), np.float32).T  # [13, M]
    need = 4 * (count - 1) + syncnet.MFCC_FRAMES if count else 0
    if mfcc.shape[1] < need:
        mfcc = np.pad(mfcc, ((0, 0), (0, need - mfcc.shape[1])), mode="edge")
    idx = 4 * np.arange(count)[:, None] + np.arange(syncnet.MFCC_FRAMES)[None, :]
    return np.transpose(mfcc[:, idx], (1, 0, 2))


def load_expert(path: str, config=None) -> Expert:
    """The expert at `path`: a training workdir or export bundle holding "syncnet" parameters (trained here),
    or a file of the public weights converted by `python -m thflax.inference.syncnet_weights`.
    InputError / CheckpointError (one line) otherwise."""
    from thflax.inference import params, syncnet_weights
    from thflax.models import build

    if syncnet_weights.is_public_file(path):
        model, variables = syncnet_weights.load(path)
        return Expert("public SyncNet weights (syncnet_python)", model, variables, syncnet.PUBLIC_INPUT, public=True)
    if not os.path.isdir(path):
        raise InputError(f"lip-sync expert not found: {path}")
    if not params.has_params(path, params.EXPERT):
        raise InputError(f"{path} holds no lip-sync expert (train one with `python -m thflax.training.syncnet_stage "
                         f"--workdir {path}`)")
    variables, config = params.load_params(path, params.EXPERT, config)
    model = build.build_syncnet(config)
    accuracy = _validation_accuracy(path)
    name = f"SyncNet trained here on {config.data.name}" + (f" (validation accuracy {accuracy:.2f})"
                                                             if accuracy is not None else "")
    return Expert(name, model, variables, build.syncnet_input(config), public=False, n_mfcc=int(config.syncnet.n_mfcc),
                  crop_size=int(config.ltv.image_size))


def find_expert(path: str | None) -> Expert | None:
    """The expert trained in workdir (or bundle) `path`, None when it has none (or `path` is None)."""
    from thflax.inference import params

    if not path or not os.path.isdir(path) or not params.has_params(path, params.EXPERT):
        return None
    return load_expert(path)


def _validation_accuracy(path: str) -> float | None:
    """The accuracy `thflax.training.syncnet_stage` recorded next to the checkpoints (None if absent)."""
    import json

    try:
        with open(os.path.join(path, "syncnet", "validation.json")) as f:
            return float(json.load(f)["accuracy"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def note(expert: Expert | None) -> str:
    """The line under a table that says what its LSE columns were computed with."""
    if expert is None:
        return ("LSE-D / LSE-C: no lip-sync expert was given (columns blank); train one with "
                "`python -m thflax.training.syncnet_stage`.")
    if expert.public:
        return (f"LSE-D (lower is better) / LSE-C (higher is better) / LSE offset: {expert.name}, framing approximated "
                "on this project's face crops.")
    return (f"LSE-D (lower is better) / LSE-C (higher is better) / LSE offset: {expert.name}, not the public "
            "weights: these figures compare the rows of this table (the real video and the copied frame give the "
            "scale) and are not comparable with published LSE-C/D.")
