"""Wav2Lip's expert sync loss (Prajwal et al. 2020, eq. 5) for the LTV generator: -log of a frozen lip-sync
expert's probability that a window of 5 generated frames is in sync with its speech (`config.ltv.sync_weight`).

The expert is the contrastive SyncNet trained here (`thflax.training.syncnet_stage`), loaded from
`config.ltv.sync_expert` with `thflax.measures.lip_sync_expert.load_expert` and read with the same input
(`syncnet.video_input`: its mouth region, resized, [-1, 1]) that LSE-C / LSE-D use. Its parameters are
constants of the step, never in the optimiser, and `stop_gradient` keeps any gradient out of them.

The probability. Wav2Lip's expert is trained with a binary cross-entropy on the cosine similarity of its
(ReLU) embeddings, so its cosine *is* a probability. This expert was trained otherwise: a softmax over minus
the Euclidean distances between one video window and the audio at every shift within +-max_shift frames (the
in-sync one and those at least min_shift away) plus the zero vector (`syncnet_stage.multiway_terms`). That
softmax is the only probability it was calibrated to give; a cosine of its embeddings, or a distance squashed
into (0, 1), would be a number it never learnt to make mean anything. So the loss is its cross-entropy with the
in-sync audio as the answer, over the same candidates (those inside the utterance) as in its training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from thflax.errors import CheckpointError, InputError
from thflax.measures import lip_sync_expert
from thflax.models import syncnet
from thflax.training.syncnet_stage import multiway_terms


def load_expert(config) -> lip_sync_expert.Expert:
    """The frozen expert at `config.ltv.sync_expert`; InputError / CheckpointError (one line) when there is none
    or it does not read what this config's LTV stage makes (its crop size, mouth region and their size)."""
    path = str(config.ltv.sync_expert or "")
    if not path:
        raise InputError(f"config.ltv.sync_weight={config.ltv.sync_weight} needs a lip-sync expert: set "
                         "--config.ltv.sync_expert to a workdir or export bundle with one")
    expert = lip_sync_expert.load_expert(path)
    if expert.public:
        raise CheckpointError(f"config.ltv.sync_expert={path} is the public SyncNet (whole 224x224 faces, raw "
                              "speech); the sync loss needs an expert trained here on this corpus's crops")
    size, c = int(config.ltv.image_size), config.syncnet
    want = (tuple(float(v) for v in c.region), tuple(int(v) for v in c.image_size))
    got = (tuple(float(v) for v in expert.spec.region), tuple(int(v) for v in expert.spec.size))
    if expert.crop_size != size or got != want:
        raise CheckpointError(f"the lip-sync expert at {path} reads region {got[0]} at {got[1]} of {expert.crop_size}"
                              f"px crops; this config makes region {want[0]} at {want[1]} of {size}px crops")
    return expert


def candidates(valid: jax.Array, min_shift: int) -> jax.Array:
    """allowed [b, L] bool: the audio windows a video window is scored against, of the L = 2·max_shift + 1
    shifts around it (the middle one in sync): in sync, or at least `min_shift` away, and inside the
    utterance (valid [b, L] > 0), as in the expert's training."""
    length = valid.shape[-1]
    shift = np.abs(np.arange(length) - length // 2)
    return (valid > 0) & jnp.asarray((shift == 0) | (shift >= min_shift))[None, :]


def sync_loss(expert: lip_sync_expert.Expert, frames: jax.Array, mfcc: jax.Array, valid: jax.Array,
              min_shift: int) -> jax.Array:
    """-log P(in sync) [b] of windows of generated frames.

    frames [b, 5, S, S, 3] in [-1, 1] (the generator's output); mfcc [b, L, 20, n] the dataset's per-frame MFCC
    windows of the L = 2·max_shift + 1 frames around the window's middle frame (index L // 2: its 20 MFCC frames
    span the five video frames, as `lip_sync_expert.Expert.audio_windows` pairs them); valid [b, L] (0 past the
    utterance's ends).
    """
    variables = jax.lax.stop_gradient(expert.variables)
    # video_input reads uint8-range pixels; kept real-valued (not rounded) so the gradient reaches the frames.
    pixels = (frames + 1.0) * 127.5
    video = expert.model.apply(variables, syncnet.video_input(pixels, expert.spec),
                               method=syncnet.SyncNet.embed_video)  # [b, E]
    b, length = mfcc.shape[:2]
    audio_in = jnp.swapaxes(mfcc[..., :expert.n_mfcc], -1, -2).reshape((b * length, expert.n_mfcc, -1))
    audio = jax.lax.stop_gradient(expert.model.apply(variables, audio_in, method=syncnet.SyncNet.embed_audio))
    ce, _ = multiway_terms(video[:, None], audio.reshape(b, length, -1), candidates(valid, min_shift)[:, None],
                           np.array([length // 2]))
    return ce[:, 0]
