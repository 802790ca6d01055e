"""Shared TFDS builder for talking-head corpora: features, configs, splits, robust generation.

Each concrete builder only says where its utterances are (`_find_items`). Examples are one utterance
each (see `input_pipeline.preprocess.process_item`):

  mfcc        [T, W, n_mfcc] float32  per-frame MFCC windows (CMVN per utterance)
  landmarks   [T, 68, 2]     float32  dlib landmarks smoothed over time (training targets),
                                      normalised crop coordinates
  landmarks_raw [T, 68, 2]   float32  dlib landmarks as detected (templates), same coordinates
  frames      [T, S, S, 3]   uint8    face crops, stored as one JPEG per frame
  audio       [T·640]        int16    16 kHz speech cut to exactly the kept frames
  fps, speaker, utterance, start_frame (first kept frame of the source video), crop_box (x0, y0, side)

Configs `crop64`, `crop128`, `crop256` differ in crop size S. Splits (`preprocess.split_items`):
`train`/`validation`/`test` 8:1:1 by utterance within each speaker (default), or test = whole
speakers (config `split_by`) with validation 10% of the other speakers' utterances. `validation` is
what training-time metrics and any tuning read; `test` is read only by evaluate.py / reproduce.py.
`train` crops use one box over the clip; `validation`/`test` crops are framed from frame 0 alone, as
generation frames a photo (see `input_pipeline.preprocess`). Preparation runs on
`num_workers` processes, caches each video's tracked landmarks so an interrupted build does not redo
dlib, and writes `build_report_<split>.json` (counts + reason per skipped/trimmed utterance) into the
dataset directory.

Bad input fails with one line (`thflax.errors.InputError`), never a half-built dataset:
  * no utterance in the input folder (missing, empty, or no video where the builder looks);
  * `train` or `test` would have no utterance at all (e.g. every speaker has a single utterance, so
    none goes to `test`). A corpus with no speaker of 3 or more utterances has none for `validation`:
    it builds without that split, with a warning (`checked_splits`);
  * a split whose utterances were all skipped (`UnusableSplitError`). TFDS deletes its temporary build
    folder on failure, so that split's report is then written next to the version folders, to
    `<data_dir>/<name>/<config>/build_report_<split>.failed.json`, and the error names it. A later
    build of the same config removes these files when it starts. With Beam the workers write that
    file and the launcher raises after the pipeline; should TFDS's own empty-split check stop the
    pipeline before the report step ran, the error says the reasons were not written.

Given Apache Beam options (`DownloadConfig(beam_options=...)`, `tfds build --beam_pipeline_options=...`;
see `input_pipeline.build`), the same examples are generated as a Beam pipeline instead, so any Beam
runner (Dataflow, Flink, Spark, the multi-process DirectRunner) spreads the utterances over its workers.
Keys are `speaker/utterance` in both modes, so both write identical datasets and identical reports.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from concurrent import futures
import dataclasses
import json
import logging
import multiprocessing
import os
import re

import numpy as np
from thflax.io.quiet_tf import import_tensorflow

import_tensorflow()  # tfds loads TensorFlow when it builds: load it now, without its load-time banner
import tensorflow_datasets as tfds  # noqa: E402

from input_pipeline import preprocess
from thflax.errors import InputError

SPLITS = preprocess.SPLITS


class UnusableSplitError(InputError):
    """Every utterance of a split was skipped; `report_path` holds the reasons (None if Beam stopped
    before writing them)."""

    def __init__(self, message: str, report_path: str | None):
        super().__init__(message)
        self.report_path = report_path


@dataclasses.dataclass(eq=False)
class TalkingHeadConfig(tfds.core.BuilderConfig):
    crop_size: int = 256
    split_by: str = "utterance"
    test_speakers: tuple[str, ...] = ()
    # Only used by the synthetic corpus.
    num_speakers: int = 0
    utterances_per_speaker: int = 0
    seed: int = 0
    # Amplitude of all head motion (`thflax.synthetic.head_motion.head_poses`): 1 = the corpus' lively heads,
    # < 1 stiller and more frontal ones (`grid_like`). 1 leaves the generated corpus as it always was.
    head_motion_scale: float = 1.0


def _crop_configs(**kwargs) -> list[TalkingHeadConfig]:
    return [TalkingHeadConfig(name=f"crop{s}", crop_size=s, description=f"{s}x{s} face crops", **kwargs)
            for s in (64, 128, 256)]


class TalkingHeadBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base class; subclasses implement `_find_items`."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "2.0.0": "Evaluation without leaks: a `validation` split (10% of each speaker's non-test "
                 "utterances) for training-time metrics and tuning; `landmarks_raw` (unsmoothed dlib "
                 "landmarks: templates); validation and test crops framed from frame 0 alone, as "
                 "generation frames a photo (train keeps one box per clip).",
    }
    #: What `_find_items` looks for, for the error when it finds nothing.
    EXPECTED_INPUT = "talking-head videos; see the builder's download instructions"

    def __init__(self, *, num_workers: int | None = None, **kwargs):
        self.num_workers = num_workers if num_workers is not None else (os.cpu_count() or 1)
        self._use_beam = False
        self.beam_counters: dict[str, int] = {}  # of the last Beam build: {"train_ok": 9, ...}
        super().__init__(**kwargs)

    @property
    def prep_config(self) -> preprocess.PrepConfig:
        return preprocess.PrepConfig(crop_size=self.builder_config.crop_size)

    # TFDS prints "Downloading and preparing dataset Unknown size (download: Unknown size, ...)" before
    # a build and a bold "downloaded and prepared" after it: these corpora are built here from local
    # files and download nothing, so one log line each instead (TFDS's private hooks; if a TFDS version
    # renames them, its own lines simply come back).
    def _log_download_bytes(self) -> None:
        logging.info("building %s in %s from local files (nothing is downloaded)", self.info.full_name,
                     self.data_dir)

    def _log_download_done(self) -> None:
        logging.info("built %s in %s", self.info.full_name, self.data_dir)

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.prep_config
        s, m = cfg.crop_size, cfg.mfcc
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "mfcc": tfds.features.Tensor(shape=(None, m.window, m.n_mfcc), dtype=np.float32),
                "landmarks": tfds.features.Tensor(shape=(None, 68, 2), dtype=np.float32),
                "landmarks_raw": tfds.features.Tensor(shape=(None, 68, 2), dtype=np.float32),
                "frames": tfds.features.Video(shape=(None, s, s, 3), encoding_format="jpeg"),
                "audio": tfds.features.Audio(shape=(None,), dtype=np.int16, sample_rate=m.sample_rate),
                "fps": tfds.features.Scalar(dtype=np.float32),
                "speaker": tfds.features.Text(),
                "utterance": tfds.features.Text(),
                "start_frame": tfds.features.Scalar(dtype=np.int32),
                "crop_box": tfds.features.Tensor(shape=(3,), dtype=np.float32),
            }),
            metadata=tfds.core.MetadataDict(
                crop_size=s, fps=cfg.fps, n_mfcc=m.n_mfcc, mfcc_window=m.window, n_mels=m.n_mels,
                hop_seconds=m.hop_seconds, win_seconds=m.win_seconds, sample_rate=m.sample_rate,
                normalisation="per-utterance CMVN", landmarks="normalised crop coordinates",
                crop_box={split: preprocess.SPLIT_BOX[split] for split in SPLITS}),
        )

    def _download_and_prepare(self, dl_manager, download_config):
        # TFDS runs a split as a Beam pipeline when `_generate_examples` returns a PTransform. Do that
        # exactly when the build was given a runner or pipeline options; otherwise stay local.
        self._use_beam = bool(download_config.beam_runner or download_config.beam_options)
        for split in SPLITS:  # from an earlier failed build: this one writes its own
            _remove(self._failed_report_path(split))
        try:
            result = super()._download_and_prepare(dl_manager, download_config)
        except InputError:
            raise
        except Exception as e:
            if self._use_beam:  # a split without examples may have failed the pipeline: say why
                self._raise_if_unusable(cause=e)
            raise
        finally:
            self._use_beam = False
        self._raise_if_unusable()
        return result

    def _failed_report_path(self, split: str) -> str:
        """Where `split`'s report goes if none of its utterances is usable: next to the version
        folders (`<data_dir>/<name>/<config>/`), outside the temporary build folder TFDS deletes."""
        return os.fspath(self.data_path.parent / f"build_report_{split}.failed.json")

    def _raise_if_unusable(self, cause: BaseException | None = None) -> None:
        """After a Beam build: UnusableSplitError for a split whose workers wrote a failed report.

        The report step is not ordered before TFDS's own check that a split has examples, which fails
        the pipeline; if that came first, no report was written and the error says so.
        """
        from etils import epath

        for split in SPLITS:
            path = self._failed_report_path(split)
            if epath.Path(path).exists():
                counts = json.loads(epath.Path(path).read_text()).get("counts", {})
                raise UnusableSplitError(_unusable_message(self._full_name, split, counts, path), path) from cause
        empty = re.search(r"number of generated examples is 0 for split (\w+)", str(cause or ""))
        if empty:
            raise UnusableSplitError(
                f"no usable utterance in split {empty.group(1)!r} of {self._full_name}: all skipped (the Beam "
                f"pipeline stopped before writing their reasons; a local build writes them)", None) from cause

    @property
    def _full_name(self) -> str:
        return f"{self.name}/{self.builder_config.name}"

    def _manual_folder(self, dl_manager) -> str:
        """The manual folder, or an InputError if it is missing or empty."""
        try:
            return os.fspath(dl_manager.manual_dir)
        except AssertionError:  # TFDS: missing or empty, with the download instructions over many lines
            path = os.fspath(getattr(dl_manager, "_manual_dir", None) or "") or "(none given)"
        state = "is empty" if os.path.isdir(path) else "does not exist"
        raise InputError(f"no utterances found for {self._full_name}: the manual folder {path} {state}; "
                         f"expected {self.EXPECTED_INPUT}")

    def _process_pipeline_result(self, pipeline_result) -> None:
        """Keeps and logs the Beam counters (`<split>_ok|trimmed|skipped`); the reports hold the details."""
        import apache_beam as beam

        try:
            counters = pipeline_result.metrics().query(
                beam.metrics.MetricsFilter().with_namespace(_BEAM_NAMESPACE))["counters"]
        except Exception:  # noqa: BLE001 - some runners do not report metrics; they are informative only
            return
        self.beam_counters = {c.key.metric.name: c.committed for c in counters}
        logging.info("%s Beam counters: %s", self.name, self.beam_counters)

    @abc.abstractmethod
    def _find_items(self, dl_manager: tfds.download.DownloadManager) -> list[preprocess.Item]:
        """All utterances of the corpus."""

    def _input_folder(self, dl_manager) -> str:
        """The folder `_find_items` reads, for messages."""
        try:
            return os.fspath(dl_manager.manual_dir)
        except Exception:  # noqa: BLE001 - only for a message
            return "its input folder"

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        items = self._find_items(dl_manager)
        if not items:
            raise InputError(f"no utterances found for {self._full_name} in {self._input_folder(dl_manager)}: "
                             f"expected {self.EXPECTED_INPUT}")
        cfg = self.builder_config
        parts = preprocess.split_items(items, cfg.split_by, tuple(cfg.test_speakers))
        parts = checked_splits(parts, self._full_name, lambda split: _empty_split_message(
            self._full_name, split, items, cfg, self._input_folder(dl_manager)))
        return self._split_examples(dl_manager, parts)

    def _split_examples(self, dl_manager, parts: dict[str, list[preprocess.Item]]):
        """{split: its example generator} for `parts` ({split: utterances}, from `checked_splits`)."""
        cache = os.path.join(str(dl_manager.download_dir), "thflax_cache", self.name, self.builder_config.name)
        return {split: self._generate_examples(part, cache, split) for split, part in parts.items()}

    def _split_prep_config(self, split: str) -> preprocess.PrepConfig:
        """`prep_config` with the split's crop box (`preprocess.SPLIT_BOX`)."""
        return dataclasses.replace(self.prep_config, box=preprocess.SPLIT_BOX[split])

    def _generate_examples(self, items, cache_dir, split):
        if self._use_beam:
            # Workers write the landmark cache with plain file I/O: only on a local or mounted path.
            cache = None if "://" in cache_dir else cache_dir
            report_path = os.path.join(str(self.data_path), f"build_report_{split}.json")
            return _beam_examples(items, self._split_prep_config(split), cache, split, report_path,
                                  self._failed_report_path(split))
        return self._generate_local(items, cache_dir, split)

    def _generate_local(self, items, cache_dir, split):
        report = preprocess.BuildReport(split)
        cfg = self._split_prep_config(split)
        jobs = [(it, cfg, cache_dir) for it in items]
        # Worker processes take seconds to start (imports, dlib model), so small splits stay serial.
        workers = min(self.num_workers, len(jobs) // 12)
        if workers > 1:
            # spawn, not fork: the parent has TensorFlow's threads running.
            # A crashed worker raises BrokenProcessPool here instead of hanging the build.
            ctx = multiprocessing.get_context("spawn")
            with futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                yield from self._collect(pool.map(preprocess.process_job, jobs), report)
        else:
            yield from self._collect(map(preprocess.process_job, jobs), report)
        failed = self._failed_report_path(split)
        if _save_report(report, os.path.join(str(self.data_path), f"build_report_{split}.json"), failed):
            raise UnusableSplitError(_unusable_message(self._full_name, split, report.counts, failed), failed)

    @staticmethod
    def _collect(results, report):
        for item, (example, status, reason) in results:
            report.add(item, status, reason)
            if example is not None:
                yield item.key, example


_BEAM_NAMESPACE = "thflax_prepare"
_REPORT_TAG = "report"


def _beam_prepare(item: preprocess.Item, cfg: preprocess.PrepConfig, cache_dir: str | None, split: str):
    """One utterance on a Beam worker: (key, example) if kept, plus its outcome on the report output."""
    import apache_beam as beam

    example, status, reason = preprocess.process_item(item, cfg, cache_dir)
    beam.metrics.Metrics.counter(_BEAM_NAMESPACE, f"{split}_{status}").inc()
    yield beam.pvalue.TaggedOutput(_REPORT_TAG, (item, status, reason))
    if example is not None:
        yield item.key, example


def checked_splits(parts: dict[str, list[preprocess.Item]], dataset: str,
                   empty_message: Callable[[str], str]) -> dict[str, list[preprocess.Item]]:
    """The splits to write, in `SPLITS` order: InputError(`empty_message(split)`) if train or test has no
    utterance; an empty validation split is left out with a warning.

    A corpus too small to hold out validation utterances (no speaker with 3 or more) still builds and
    trains: `input_pipeline.pipeline.StageData` then says that training-time metrics are off. TFDS
    cannot write a split without examples, so the split is absent rather than empty.
    """
    for split in ("train", "test"):
        if not parts.get(split):
            raise InputError(empty_message(split))
    if not parts.get("validation"):
        logging.warning("%s: no validation split (%s); training will run without held-out metrics",
                        dataset, empty_message("validation"))
    return {split: parts[split] for split in SPLITS if parts.get(split)}


def _unusable_message(dataset: str, split: str, counts, report_path: str) -> str:
    return (f"no usable utterance in split {split!r} of {dataset}: {counts.get(preprocess.SKIP, 0)} skipped "
            f"(reasons in {report_path})")


def _empty_split_message(dataset: str, split: str, items, cfg: TalkingHeadConfig, folder: str) -> str:
    """Why `split_items` left `split` without any utterance."""
    speakers = sorted({it.speaker for it in items})
    shown = ", ".join(speakers[:5]) + (", ..." if len(speakers) > 5 else "")
    head = f"split {split!r} of {dataset} would be empty"
    if cfg.split_by == "speaker":
        tests = ", ".join(cfg.test_speakers)
        if split == "test":
            return f"{head}: no utterance of its test speaker(s) {tests} in {folder} (speakers there: {shown})"
        if split == "validation":
            return (f"{head}: each non-test speaker in {folder} ({shown}) has a single utterance; validation "
                    f"takes 10% of the utterances of each non-test speaker that has 2 or more")
        return f"{head}: every speaker in {folder} ({shown}) is a test speaker"
    if split == "validation":
        return (f"{head}: each of the {len(speakers)} speaker(s) in {folder} ({shown}) has at most 2 "
                f"utterances; after test, validation takes 10% of the utterances of each speaker that has "
                f"3 or more")
    return (f"{head}: each of the {len(speakers)} speaker(s) in {folder} ({shown}) has a single utterance; "
            f"the test split takes 10% of the utterances of each speaker that has 2 or more")


def _remove(path: str) -> None:
    from etils import epath

    try:
        epath.Path(path).unlink(missing_ok=True)
    except OSError as e:  # e.g. a read-only data_dir: the stale file stays, the build goes on
        logging.warning("could not remove %s: %s", path, e)


def _save_report(report: preprocess.BuildReport, path: str, failed_path: str) -> bool:
    """Writes `report` to `path`, or to `failed_path` if the split had utterances and none is usable
    (the build then fails and TFDS deletes the folder of `path`). Returns whether it was unusable."""
    unusable = bool(report.counts) and not (report.counts[preprocess.OK] or report.counts[preprocess.TRIM])
    target = failed_path if unusable else path
    if "://" not in target:
        report.write(target)
    else:  # e.g. a data_dir on GCS
        from etils import epath

        epath.Path(target).write_text(json.dumps(report.as_dict(), indent=1, sort_keys=True))
    return unusable


def _write_report(outcomes, split: str, path: str, failed_path: str) -> None:
    """The build report from every utterance's outcome: the same file `_generate_local` writes (or
    its failed one; the launcher raises for it after the pipeline)."""
    report = preprocess.BuildReport(split)
    for item, status, reason in sorted(outcomes, key=lambda o: o[0].key):
        report.add(item, status, reason)
    _save_report(report, path, failed_path)


def _beam_examples(items, cfg, cache_dir, split, report_path, failed_report_path):
    """The Beam version of `_generate_local`: a PTransform from the pipeline root to (key, example).

    The utterance list is part of the pipeline graph (`Create` reshuffles it over the workers). Each
    outcome also goes to a side output, collected into one list that a last step writes as the report.
    """
    import apache_beam as beam

    @beam.ptransform_fn
    def generate(root):
        results = (root
                   | "Utterances" >> beam.Create(items)
                   | "Prepare" >> beam.FlatMap(_beam_prepare, cfg=cfg, cache_dir=cache_dir, split=split)
                   .with_outputs(_REPORT_TAG, main="examples"))
        _ = (results[_REPORT_TAG]
             | "CollectOutcomes" >> beam.combiners.ToList()
             | "WriteReport" >> beam.Map(_write_report, split=split, path=report_path,
                                         failed_path=failed_report_path))
        return results["examples"]

    return generate()
