"""tf.data input pipeline: per-host shards of a prepared TFDS dataset -> numpy training batches.

Determinism and resume: the training stream is a function of (seed, step) only. Epoch e is the host's
shard shuffled with seed (seed, e); every random choice for an element (clip start, reference frame,
target frame) uses stateless RNG seeded by (seed, epoch, index in epoch). `start_step` therefore
re-creates exactly the batches a run would have seen from that step on, skipping whole epochs for free
and only the remainder of the current one — which is what makes checkpoint resume exact.

Splits: training reads `config.data.train_split` ("train") and, for its held-out metrics,
`config.data.eval_split` ("validation"); neither may name `test`, which only evaluate.py and
reproduce.py read (`utterances`), so nothing tuned during training has seen a test utterance.

Batches (leading dim = per-host batch, divisible by the local device count):

  what the stage's task makes of each example (`thflax.training.tasks.Task.elements`; e.g. STL clips, LTV
  frame pairs), batched. The pipeline itself knows no stage.
"""

from __future__ import annotations

import logging
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from thflax.io.quiet_tf import import_tensorflow  # noqa: E402

tf = import_tensorflow()  # before anything loads TensorFlow: without its load-time banner
import tensorflow_datasets as tfds  # noqa: E402

# Register the builders.
from input_pipeline import grid as _grid  # noqa: E402,F401
from input_pipeline import synthetic as _synthetic  # noqa: E402,F401
from input_pipeline import talking_videos as _talking_videos  # noqa: E402,F401
from thflax.errors import InputError  # noqa: E402

# TF only feeds the host; keep it off accelerators JAX owns.
tf.config.set_visible_devices([], "GPU")

_SEED_MIX = 0x9E3779B1


def get_builder(data_config) -> tfds.core.DatasetBuilder:
    """The TFDS builder named by `config.data.name`, prepared first if `config.data.prepare`."""
    kwargs = {} if data_config.num_workers is None else {"num_workers": data_config.num_workers}
    builder = tfds.builder(data_config.name, data_dir=data_config.data_dir or None, **kwargs)
    if data_config.prepare:
        if not sys.stderr.isatty():  # per-example progress bars flood a log file; a terminal keeps them
            tfds.disable_progress_bar()
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=data_config.manual_dir or None))
    return builder


#: The split only evaluation reads.
TEST_SPLIT = "test"


def split_names(spec: str) -> list[str]:
    """The split names in a TFDS split spec: "train[:80%]+validation" -> ["train", "validation"]."""
    return re.findall(r"(?:^|\+)\s*([A-Za-z_]\w*)", spec)


def existing_split(builder, spec: str) -> str:
    """`spec`, or InputError if it names a split the prepared dataset lacks."""
    names = split_names(spec)
    if not names or any(n not in builder.info.splits for n in names):
        raise InputError(f"{builder.info.full_name} has no split {spec!r} (it has "
                         f"{', '.join(sorted(builder.info.splits))})")
    return spec


def training_split(builder, spec: str, key: str) -> str:
    """`spec` (config.data.`key`) if training may read it: InputError if it names the test split or a
    split the prepared dataset lacks."""
    names = split_names(spec)
    if not names:
        raise InputError(f"config.data.{key}={spec!r} names no split")
    if TEST_SPLIT in names:
        raise InputError(f"config.data.{key}={spec!r}: training must not read the {TEST_SPLIT!r} split (only "
                         f"evaluate.py does); use 'train' for training and 'validation' for held-out metrics")
    missing = [n for n in names if n not in builder.info.splits]
    if missing:
        raise InputError(f"config.data.{key}={spec!r}: {builder.info.full_name} has no split "
                         f"{', '.join(map(repr, missing))} (it has {', '.join(sorted(builder.info.splits))}; "
                         f"a corpus too small to hold utterances out for 'validation' is built without it)")
    return spec


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


def _with_ids(out, ex):
    """Adds the utterance id ("speaker/utterance") to each of an example's elements (for debugging)."""
    out = dict(out)
    n = tf.shape(next(iter(out.values())))[0]
    out["utterance"] = tf.fill([n], ex["speaker"] + "/" + ex["utterance"])
    return out


class _Undecoded(tfds.decode.SkipDecoding):
    """`SkipDecoding` that hands a sequence feature's encoded elements (e.g. each frame's JPEG) over as they are.

    TFDS's own maps the identity over the sequence with `tf.map_fn(dtype=feature.dtype)`, which logs two
    deprecation warnings (`map_fn`'s `dtype`, `TensorInfo.dtype`) and copies every element; the result is
    the same tensor.
    """

    def decode_batch_example(self, serialized_example):
        return serialized_example

    def decode_ragged_example(self, serialized_example):
        return serialized_example


def _read(builder, split, features=None, autocache: bool = True):
    """The split's examples with only `features` parsed (all if None); sequences of JPEGs stay encoded.

    A stage reads a few of an utterance's features: STL never looks at the frames, which at 256² are most
    of a record's bytes, so they are not parsed for it. `autocache=False` turns off TFDS's in-memory
    cache of datasets under its size limit (250 MiB), which a large corpus never gets: the loader
    benchmark measures what such a corpus costs.
    """
    undecoded = {k: _Undecoded() for k in ("frames", "audio") if features is None or k in features}
    decoders = undecoded if features is None else tfds.decode.PartialDecoding(
        {k: True for k in features}, decoders=undecoded)
    return builder.as_dataset(split=split, shuffle_files=False, decoders=decoders,
                              read_config=tfds.ReadConfig(add_tfds_id=False, try_autocache=autocache))


def _features(task, train: bool, keep_ids: bool) -> tuple[str, ...] | None:
    """The dataset features `task` reads (None: all), with the utterance ids if kept."""
    features = getattr(task, "features", None)
    if features is None:
        return None
    return tuple(features(train)) + (("speaker", "utterance") if keep_ids else ())


def train_dataset(config, task, builder=None, *, process_index=None, process_count=None, start_step: int = 0,
                  num_devices: int | None = None, autocache: bool = True) -> tf.data.Dataset:
    """Infinite, deterministic training batches of `task` (a `thflax.training.tasks.Task`) on this host, from `start_step`.

    The batch size is `config.<task.name>.batch_size`, global over all hosts. `autocache`: see `_read`.
    """
    import jax

    builder = builder or get_builder(config.data)
    batch_size = int(config[task.name].batch_size)
    process_count_ = jax.process_count() if process_count is None else process_count
    if batch_size < 1 or batch_size % process_count_:
        raise InputError(f"config.{task.name}.batch_size={batch_size} must be a positive multiple of the "
                         f"{process_count_} host(s)")
    per_host = batch_size // process_count_
    num_devices = jax.local_device_count() if num_devices is None else num_devices
    if per_host % num_devices:
        raise InputError(f"config.{task.name}.batch_size={batch_size} gives {per_host} per host, not divisible by "
                         f"{num_devices} local devices")
    split = host_split(builder, training_split(builder, config.data.train_split, "train_split"), process_index,
                       process_count)
    n = builder.info.splits[split].num_examples
    if n == 0:
        raise InputError(f"split {split!r} of {builder.name} has no examples for this host")
    keep_ids = bool(config.data.keep_ids)
    base = _read(builder, split, _features(task, True, keep_ids), autocache)
    seed = int(config.seed)
    buf = int(config.data.shuffle_buffer)
    per_example = task.elements_per_example(train=True)

    def epoch(e):
        ds = base.shuffle(buf, seed=tf.cast(seed, tf.int64) * 7919 + e, reshuffle_each_iteration=False)
        return ds.enumerate().map(lambda i, ex: (e, i, ex))

    def to_elements(e, i, ex):
        out = task.elements(ex, _element_seed(seed, e, i), train=True)
        return _with_ids(out, ex) if keep_ids else out

    consumed = start_step * per_host  # elements (clips or frame pairs) before this step
    start_epoch, rem = divmod(consumed, n * per_example)
    ds = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch)
    ds = ds.skip(rem // per_example)
    ds = ds.map(to_elements, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    ds = ds.skip(rem % per_example)
    ds = ds.batch(per_host, drop_remainder=True)
    return ds.prefetch(int(config.data.prefetch) or tf.data.AUTOTUNE)


def eval_dataset(config, task, builder=None, *, num_batches: int | None = None, process_index=None,
                 process_count=None, split: str | None = None) -> tf.data.Dataset:
    """A fixed held-out set of `task`'s batches (same structure as training), identical on every call.

    From `config.data.eval_split` (what training reads: never `test`), or from `split` if given: an
    evaluation outside training (e.g. a learning test measuring on `test`) names it explicitly.
    """
    builder = builder or get_builder(config.data)
    if split is None:
        split = training_split(builder, config.data.eval_split, "eval_split")
    split = host_split(builder, existing_split(builder, split), process_index, process_count)
    base = _read(builder, split, _features(task, False, False))
    seed = int(config.seed) + 1
    scfg = config[task.name]
    num_batches = num_batches or int(scfg.eval_batches)
    ds = base.repeat().enumerate().map(lambda i, ex: task.elements(ex, _element_seed(seed, 0, i), train=False))
    return ds.unbatch().batch(int(scfg.eval_batch_size), drop_remainder=True).take(num_batches).cache()


def as_numpy(ds: tf.data.Dataset):
    """Iterator of numpy batches (dicts of np.ndarray)."""
    return iter(tfds.as_numpy(ds))


class StageData:
    """The datasets of one training stage, as `thflax.training.trainer.train_stage` consumes them.

    Training batches are made on demand from a start step (the trainer knows it only after restoring
    a checkpoint); the held-out batches are fixed. Both splits are checked here, before any work:
    neither may be `test`, and the training split must exist. A dataset without the eval split (a
    corpus too small to hold out validation utterances: `builder_base.checked_splits`) trains
    without held-out metrics, and says so.
    """

    def __init__(self, config, task, builder=None):
        self.config, self.task = config, task
        self.builder = builder or get_builder(config.data)
        self.metadata = {"name": self.builder.info.full_name, **dict(self.builder.info.metadata or {})}
        self.splits = {"train": training_split(self.builder, config.data.train_split, "train_split")}
        eval_spec = config.data.eval_split
        if split_names(eval_spec) == ["validation"] and "validation" not in self.builder.info.splits:
            logging.warning("%s has no 'validation' split (its corpus is too small to hold utterances out "
                            "for it): training runs without held-out metrics", self.builder.info.full_name)
        else:
            self.splits["eval"] = training_split(self.builder, eval_spec, "eval_split")

    def train(self, start_step: int = 0, num_devices: int | None = None):
        """Iterator of this host's numpy training batches from `start_step` on."""
        return as_numpy(train_dataset(self.config, self.task, self.builder, start_step=start_step,
                                      num_devices=num_devices))

    def eval(self) -> list[dict[str, np.ndarray]]:
        """This host's held-out numpy batches ([] if the dataset has no eval split)."""
        if "eval" not in self.splits:
            return []
        return list(as_numpy(eval_dataset(self.config, self.task, self.builder)))


def utterances(config, split: str = TEST_SPLIT, builder=None, decode_frames: bool = True):
    """Whole utterances as numpy dicts (for evaluation and generation), in a fixed order."""
    builder = builder or get_builder(config.data)
    split = existing_split(builder, split)
    decoders = None if decode_frames else {"frames": tfds.decode.SkipDecoding()}
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
    for ex in tfds.as_numpy(ds):
        ex = dict(ex)
        ex["speaker"] = ex["speaker"].decode()
        ex["utterance"] = ex["utterance"].decode()
        yield ex
