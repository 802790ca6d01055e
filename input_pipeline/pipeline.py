"""tf.data input pipeline: per-host shards of a prepared TFDS dataset -> numpy training batches.

Determinism and resume: the training stream is a function of (seed, step) only. Epoch e is the host's
shard shuffled with seed (seed, e); every random choice for an element (clip start, reference frame,
target frame) uses stateless RNG seeded by (seed, epoch, index in epoch). `start_step` therefore
re-creates exactly the batches a run would have seen from that step on, skipping whole epochs for free
and only the remainder of the current one — which is what makes checkpoint resume exact.

Batches (leading dim = per-host batch, divisible by the local device count):

  STL: mfcc [B, L, W, n_mfcc] f32, landmarks [B, L, 68, 2] f32 (normalised crop coordinates),
       template [B, 68, 2] f32 (a random frame of the same utterance), mask [B, L] f32 (0 = padding
       when an utterance is shorter than L).
  LTV: reference [B, S, S, 3] uint8, target [B, S, S, 3] uint8 (a different frame of the same
       utterance), landmarks [B, 68, 2] (target's), ref_landmarks [B, 68, 2].
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

# Register the builders.
from input_pipeline import grid as _grid  # noqa: E402,F401
from input_pipeline import synthetic as _synthetic  # noqa: E402,F401
from input_pipeline import talking_videos as _talking_videos  # noqa: E402,F401

# TF only feeds the host; keep it off accelerators JAX owns.
tf.config.set_visible_devices([], "GPU")

_SEED_MIX = 0x9E3779B1


def get_builder(data_config) -> tfds.core.DatasetBuilder:
    """The TFDS builder named by `config.data.name`, prepared first if `config.data.prepare`."""
    kwargs = {}
    if data_config.get("num_workers") is not None:
        kwargs["num_workers"] = data_config.num_workers
    builder = tfds.builder(data_config.name, data_dir=data_config.get("data_dir") or None, **kwargs)
    if data_config.get("prepare", True):
        manual = data_config.get("manual_dir") or None
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    return builder


def host_split(builder, split: str, process_index: int | None, process_count: int | None):
    """This host's disjoint, equal-sized part of `split` (drop_remainder keeps hosts in lockstep)."""
    import jax

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if process_count == 1:
        return split
    return tfds.split_for_jax_process(split, process_index=process_index, process_count=process_count,
                                      drop_remainder=True)


def _element_seed(seed: int, epoch, index):
    """Stateless RNG seed [2] for element `index` of `epoch`."""
    return tf.stack([tf.cast(seed, tf.int64) * _SEED_MIX + tf.cast(epoch, tf.int64),
                     tf.cast(index, tf.int64)])


def _stl_element(ex, seed, clip_len: int):
    lm, mfcc = ex["landmarks"], ex["mfcc"]
    n = tf.shape(lm)[0]
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    start = tf.random.stateless_uniform([], s1, 0, tf.maximum(n - clip_len, 0) + 1, tf.int32)
    ref = tf.random.stateless_uniform([], s2, 0, n, tf.int32)
    idx = tf.minimum(start + tf.range(clip_len), n - 1)  # repeat the last frame when n < clip_len
    mask = tf.cast(start + tf.range(clip_len) < n, tf.float32)
    return {"mfcc": tf.gather(mfcc, idx), "landmarks": tf.gather(lm, idx), "template": lm[ref], "mask": mask}


def _ltv_elements(ex, seed, pairs: int):
    n = tf.shape(ex["landmarks"])[0]
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    tgt = tf.random.stateless_uniform([pairs], s1, 0, n, tf.int32)
    # A different frame of the same utterance (identical pairs teach nothing and make PSNR infinite).
    ref = (tgt + tf.random.stateless_uniform([pairs], s2, 1, tf.maximum(n, 2), tf.int32)) % n
    dec = lambda i: tf.io.decode_jpeg(tf.gather(ex["frames"], i), channels=3)  # noqa: E731
    out = {
        "reference": tf.map_fn(dec, ref, fn_output_signature=tf.uint8),
        "target": tf.map_fn(dec, tgt, fn_output_signature=tf.uint8),
        "landmarks": tf.gather(ex["landmarks"], tgt),
        "ref_landmarks": tf.gather(ex["landmarks"], ref),
    }
    return tf.data.Dataset.from_tensor_slices(out)


def _with_ids(out, ex):
    out = dict(out)
    out["utterance"] = ex["speaker"] + "/" + ex["utterance"]
    return out


def _read(builder, split):
    return builder.as_dataset(split=split, shuffle_files=False,
                              decoders={"frames": tfds.decode.SkipDecoding(), "audio": tfds.decode.SkipDecoding()},
                              read_config=tfds.ReadConfig(add_tfds_id=False))


def train_dataset(config, builder=None, *, process_index=None, process_count=None, start_step: int = 0,
                  num_devices: int | None = None) -> tf.data.Dataset:
    """Infinite, deterministic training batches for `config.stage` on this host, from `start_step`."""
    import jax

    builder = builder or get_builder(config.data)
    process_count_ = jax.process_count() if process_count is None else process_count
    if config.batch_size % process_count_:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by {process_count_} hosts")
    per_host = config.batch_size // process_count_
    num_devices = jax.local_device_count() if num_devices is None else num_devices
    if per_host % num_devices:
        raise ValueError(f"per-host batch {per_host} is not divisible by {num_devices} local devices")
    split = host_split(builder, config.data.get("train_split", "train"), process_index, process_count)
    n = builder.info.splits[split].num_examples
    if n == 0:
        raise ValueError(f"split {split!r} of {builder.name} has no examples for this host")
    base = _read(builder, split)
    seed, stage = int(config.seed), config.stage
    buf = int(config.data.get("shuffle_buffer", 1024))
    keep_ids = bool(config.data.get("keep_ids", False))
    pairs = int(config.get("ltv", {}).get("pairs_per_example", 4)) if stage == "ltv" else 1

    def epoch(e):
        ds = base.shuffle(buf, seed=tf.cast(seed, tf.int64) * 7919 + e, reshuffle_each_iteration=False)
        return ds.enumerate().map(lambda i, ex: (e, i, ex))

    consumed = start_step * per_host  # elements (clips or frame pairs) before this step
    start_epoch, rem = divmod(consumed, n * pairs)
    ds = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch)
    ds = ds.skip(rem // pairs)
    if stage == "stl":
        clip_len = int(config.stl.clip_len)

        def to_clip(e, i, ex):
            out = _stl_element(ex, _element_seed(seed, e, i), clip_len)
            return _with_ids(out, ex) if keep_ids else out

        ds = ds.map(to_clip, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    elif stage == "ltv":
        def to_pairs(e, i, ex):
            out = _ltv_elements(ex, _element_seed(seed, e, i), pairs)
            if keep_ids:
                out = out.map(lambda o: _with_ids(o, ex))
            return out

        ds = ds.interleave(to_pairs, cycle_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.skip(rem % pairs)
    else:
        raise ValueError(f"unknown stage {stage!r}")
    ds = ds.batch(per_host, drop_remainder=True)
    return ds.prefetch(int(config.data.get("prefetch", 2)) or tf.data.AUTOTUNE)


def eval_dataset(config, builder=None, *, num_batches: int | None = None, process_index=None,
                 process_count=None) -> tf.data.Dataset:
    """A fixed held-out set of batches (same structure as training), identical on every call."""
    builder = builder or get_builder(config.data)
    split = host_split(builder, config.data.get("eval_split", "test"), process_index, process_count)
    base = _read(builder, split)
    seed, stage = int(config.seed) + 1, config.stage
    batch = int(config.get("eval_batch_size", config.batch_size))
    num_batches = num_batches or int(config.get("eval_batches", 1))
    if stage == "stl":
        clip_len = int(config.stl.clip_len)
        ds = base.repeat().enumerate().map(lambda i, ex: _stl_element(ex, _element_seed(seed, 0, i), clip_len))
    else:
        ds = base.repeat().enumerate().flat_map(lambda i, ex: _ltv_elements(ex, _element_seed(seed, 0, i), 1))
    return ds.batch(batch, drop_remainder=True).take(num_batches).cache()


def as_numpy(ds: tf.data.Dataset):
    """Iterator of numpy batches (dicts of np.ndarray)."""
    return iter(tfds.as_numpy(ds))


def create_datasets(config, *, process_index=None, process_count=None, start_step: int = 0,
                    num_devices: int | None = None):
    """(train iterator of numpy batches from `start_step`, eval tf.data.Dataset) for `config.stage`."""
    builder = get_builder(config.data)
    train = train_dataset(config, builder, process_index=process_index, process_count=process_count,
                          start_step=start_step, num_devices=num_devices)
    evals = eval_dataset(config, builder, process_index=process_index, process_count=process_count)
    return as_numpy(train), evals


def utterances(config, split: str = "test", builder=None, decode_frames: bool = True):
    """Whole utterances as numpy dicts (for evaluation and generation), in a fixed order."""
    builder = builder or get_builder(config.data)
    decoders = None if decode_frames else {"frames": tfds.decode.SkipDecoding()}
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
    for ex in tfds.as_numpy(ds):
        ex = dict(ex)
        ex["speaker"] = ex["speaker"].decode()
        ex["utterance"] = ex["utterance"].decode()
        yield ex
