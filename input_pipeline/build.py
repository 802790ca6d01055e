"""Prepare a talking-head TFDS dataset, on this machine or as an Apache Beam pipeline.

Local (a pool of `--num_workers` processes on this machine; what training's `data.prepare` does):

    python -m input_pipeline.build --dataset synthetic_talking_heads/tiny \\
        --data_dir ~/tensorflow_datasets --manual_dir /data/tiny_corpus

Apache Beam (needs `pip install -e '.[beam]'`): pass `--beam_pipeline_options`, comma-separated Beam
flags without their `--` (the `tfds build` convention; values cannot contain commas). Each utterance
(dlib landmarking, crops, MFCC) is then one element of a Beam pipeline, spread over the runner's
workers; the dataset and its `build_report_<split>.json` are the same as a local build's. On this
machine, with 2 worker processes:

    python -m input_pipeline.build --dataset synthetic_talking_heads/tiny \
        --data_dir /tmp/tfds --manual_dir /data/tiny_corpus \
        --beam_pipeline_options="runner=FnApiRunner,direct_num_workers=2,direct_running_mode=multi_processing"

`runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing` ends up in the same
place offline, but Beam's DirectRunner (2.77) first tries its Prism runner, downloading the Prism binary
from GitHub, and the `direct_*` options are read only by the FnApiRunner; `runner=FnApiRunner` names
that multi-process local engine directly (tests/test_beam_build.py uses it).

TFDS's own CLI builds the same way (`--imports` registers our builders; `name/config` or `--config`).
The `tfds` command of tensorflow-datasets 4.9.10 also needs `pip install mlcroissant` to start:

    tfds build synthetic_talking_heads/tiny --imports input_pipeline.synthetic \
        --data_dir /tmp/tfds --manual_dir /data/tiny_corpus \
        --beam_pipeline_options="runner=FnApiRunner,direct_num_workers=2,direct_running_mode=multi_processing"
    tfds build input_pipeline/synthetic.py --config tiny --data_dir /tmp/tfds --manual_dir /data/tiny_corpus

Without `--beam_pipeline_options`, `tfds build` prepares locally with one process per CPU core.

All of GRID on Google Cloud Dataflow (documented, not run in CI):

    pip wheel --no-deps -w dist .       # our code, installed on every worker
    OPTS=runner=DataflowRunner,project=MY_PROJECT,region=europe-west4,temp_location=gs://MY_BUCKET/tmp
    OPTS=$OPTS,job_name=thflax-grid-crop256,requirements_file=worker_requirements.txt
    OPTS=$OPTS,extra_package=dist/thflax-0.1.0-py3-none-any.whl,sdk_container_image=MY_WORKER_IMAGE
    OPTS=$OPTS,num_workers=50,max_num_workers=200,machine_type=n2-standard-4,experiments=upload_graph
    python -m input_pipeline.build --dataset grid/crop256 \
        --data_dir gs://MY_BUCKET/tensorflow_datasets --manual_dir /mnt/grid \
        --beam_pipeline_options="$OPTS"

`worker_requirements.txt` lists the data-preparation dependencies of pyproject.toml (tensorflow-cpu,
tensorflow-datasets, librosa, dlib-bin, face-recognition-models, opencv-python-headless,
imageio-ffmpeg, scikit-image, numpy, ...) pinned to the versions installed here, e.g. from
`pip freeze`. `experiments=upload_graph` stages the pipeline graph on GCS: the list of utterances is
part of it, and for tens of thousands of videos it outgrows Dataflow's inline job-graph limit. Flink
and Spark take the same options with `runner=FlinkRunner,flink_master=HOST:8081,...` or
`runner=SparkRunner,...`.

Where the inputs must be: the builder lists utterances on the launching machine by walking
`--manual_dir`, and each worker decodes its videos by path (ffmpeg, plain file I/O). So the corpus must
be readable at the same local path on the launcher and on every worker: a shared filesystem on a
Flink/Spark cluster; on Dataflow a custom worker container (`sdk_container_image`, above) that has
the corpus at that path, e.g. copied in from GCS when the container starts. gs:// corpus paths are not
read directly. `--data_dir` may be on GCS; Beam workers then do not use the landmark cache (it lives
under `<data_dir>/downloads` and is written with plain file I/O), so a rerun redoes dlib.

Bad input (no videos in `--manual_dir`, or a split none of whose videos is usable) prints one line
`error: ...` and exits with status 2. When every utterance of a split was skipped, that split's report
survives the failed build as `<data_dir>/<name>/<config>/build_report_<split>.failed.json` (the error
names it), locally and with Beam alike.
"""

from __future__ import annotations

import argparse
import os
import sys


def make_download_config(manual_dir: str | None = None, beam_pipeline_options: str | None = None):
    """The DownloadConfig for a build; Beam options (a `tfds build`-style string) switch to Beam."""
    import tensorflow_datasets as tfds

    kwargs = {}
    if beam_pipeline_options:
        from apache_beam.options.pipeline_options import PipelineOptions

        kwargs["beam_options"] = PipelineOptions(
            flags=[f"--{opt}" for opt in beam_pipeline_options.split(",") if opt])
    return tfds.download.DownloadConfig(manual_dir=manual_dir or None, **kwargs)


def build(dataset: str, data_dir: str | None = None, manual_dir: str | None = None,
          beam_pipeline_options: str | None = None, num_workers: int | None = None):
    """Prepares `dataset` ("name/config") and returns its builder."""
    import tensorflow_datasets as tfds

    # Register the builders.
    from input_pipeline import grid, synthetic, talking_videos  # noqa: F401

    kwargs = {} if num_workers is None else {"num_workers": num_workers}
    builder = tfds.builder(dataset, data_dir=data_dir or None, **kwargs)
    builder.download_and_prepare(download_config=make_download_config(manual_dir, beam_pipeline_options))
    return builder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True,
                   help="name/config, e.g. grid/crop256, talking_videos/crop128, synthetic_talking_heads/tiny")
    p.add_argument("--data_dir", default=None, help="TFDS data_dir (default: ~/tensorflow_datasets)")
    p.add_argument("--manual_dir", default=None, help="the raw corpus (default: <data_dir>/downloads/manual)")
    p.add_argument("--beam_pipeline_options", default=None,
                   help="comma-separated Beam flags without '--' (e.g. runner=DirectRunner,direct_num_workers=2); "
                        "given: build with Apache Beam")
    p.add_argument("--num_workers", type=int, default=None,
                   help="local builds: worker processes (default: one per CPU core); ignored with Beam")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from thflax import cli
    from thflax.errors import InputError

    try:
        b = build(a.dataset, a.data_dir, a.manual_dir, a.beam_pipeline_options, a.num_workers)
    except InputError as e:  # bad input (an empty folder, no usable video, ...): one line, status 2
        cli.fail(e)
    sizes = ", ".join(f"{name}={split.num_examples}" for name, split in sorted(b.info.splits.items()))
    print(f"{b.info.full_name} in {b.data_dir}: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
