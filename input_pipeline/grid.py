"""TFDS builder for the GRID audio-visual corpus (Cooke et al., 2006), from a manual download."""

from __future__ import annotations

import os
import re

from thflax.io.quiet_tf import import_tensorflow

import_tensorflow()  # tfds loads TensorFlow when it builds: load it now, without its load-time banner
import tensorflow_datasets as tfds  # noqa: E402

from input_pipeline import builder_base
from input_pipeline.preprocess import Item

_SPEAKER = re.compile(r"^s\d+$")
VIDEO_EXTS = (".mpg", ".mpeg", ".mp4", ".avi", ".mov", ".mkv", ".webm")
AUDIO_EXTS = (".wav", ".flac")


def _speaker_of(path: str, root: str) -> str | None:
    """Nearest enclosing folder named like a GRID speaker (s1 … s34)."""
    parts = os.path.relpath(os.path.dirname(path), root).split(os.sep)
    for part in reversed(parts):
        if _SPEAKER.match(part):
            return part
    return None


def find_grid_items(root: str) -> list[Item]:
    """Utterances in a GRID-layout folder.

    Videos are any `*.mpg|*.mp4|...` under a folder named `s<N>` (e.g. `s1/bbaf2n.mpg` or
    `s1/video/mpg_6000/bbaf2n.mpg`); the speech is a `*.wav|*.flac` with the same speaker and
    utterance id anywhere else (e.g. `audio_25k/s1/bbaf2n.wav`), or else the video's own audio track.
    `.align` files are not needed for preparation.
    """
    root = os.fspath(root)
    videos: dict[tuple[str, str], str] = {}
    audios: dict[tuple[str, str], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            path = os.path.join(dirpath, name)
            spk = _speaker_of(path, root)
            if spk is None:
                continue
            if ext.lower() in VIDEO_EXTS:
                videos.setdefault((spk, stem), path)
            elif ext.lower() in AUDIO_EXTS:
                audios.setdefault((spk, stem), path)
    return [Item(spk, utt, path, audios.get((spk, utt))) for (spk, utt), path in sorted(videos.items())]


def read_align(path: str) -> list[tuple[float, float, str]]:
    """A GRID `.align` file as (start_s, end_s, word); times in the file are in 1/25000 s."""
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                out.append((int(parts[0]) / 25000.0, int(parts[1]) / 25000.0, parts[2]))
    return out


class Grid(builder_base.TalkingHeadBuilder):
    """GRID: 34 speakers × 1000 sentences, 3 s each, 25 fps frontal video."""

    BUILDER_CONFIGS = builder_base._crop_configs() + [
        builder_base.TalkingHeadConfig(
            name="crop256_s29", crop_size=256, split_by="speaker", test_speakers=("s29",),
            description="256x256 crops; test = speaker s29 (ATVGnet's evaluation split)"),
    ]
    DEFAULT_CONFIG_NAME = "crop256"
    EXPECTED_INPUT = f"GRID videos ({' '.join(VIDEO_EXTS)}) under folders named s<N>, e.g. s1/bbaf2n.mpg"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download GRID from https://spandh.dcs.shef.ac.uk/gridcorpus/ (or its Zenodo mirror,
    https://zenodo.org/records/3625687): for each speaker the video archive (`s1.zip` /
    `s1.mpg_vcd.zip`, "normal quality" .mpg), plus `audio_25k.zip` and `alignments.zip`. Extract
    everything into one folder, e.g.

        <manual_dir>/s1/bbaf2n.mpg ...            (videos, any depth under a folder named s<N>)
        <manual_dir>/audio_25k/s1/bbaf2n.wav ...  (speech; optional, else the video's audio track)
        <manual_dir>/alignments/s1/bbaf2n.align   (not needed to build)

    and pass that folder as --manual_dir (default: <data_dir>/downloads/manual/).
    """

    def _find_items(self, dl_manager):
        return find_grid_items(self._manual_folder(dl_manager))
