"""TFDS builder for any folder of talking-head videos with speech."""

from __future__ import annotations

import os

from input_pipeline import builder_base
from input_pipeline.grid import AUDIO_EXTS, VIDEO_EXTS
from input_pipeline.preprocess import Item


def find_video_items(root: str) -> list[Item]:
    """Every video under `root`. Speaker = the folder path relative to root ("default" at the top).

    Speech is a sidecar audio file with the same stem (`clip.wav` next to `clip.mp4`) if present,
    else the video's own audio track.
    """
    root = os.fspath(root)
    items = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        stems = {os.path.splitext(n)[0]: n for n in filenames if os.path.splitext(n)[1].lower() in AUDIO_EXTS}
        rel = os.path.relpath(dirpath, root)
        speaker = "default" if rel == "." else rel.replace(os.sep, "/")
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_EXTS:
                sidecar = stems.get(stem)
                items.append(Item(speaker, stem, os.path.join(dirpath, name),
                                  os.path.join(dirpath, sidecar) if sidecar else None))
    return items


class TalkingVideos(builder_base.TalkingHeadBuilder):
    """Any folder of videos of one talking person each (mp4/mov/avi/mkv/webm/mpg)."""

    BUILDER_CONFIGS = builder_base._crop_configs()
    DEFAULT_CONFIG_NAME = "crop256"
    EXPECTED_INPUT = (f"videos ({' '.join(VIDEO_EXTS)}) of one talking person each, at the top or in one "
                      "sub-folder per speaker")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put your videos (one speaking person each, face visible) under --manual_dir; sub-folders name
    speakers (e.g. <manual_dir>/alice/clip1.mp4). Speech comes from each video's audio track, or from
    a sidecar .wav/.flac with the same name.
    """

    def _find_items(self, dl_manager):
        return find_video_items(self._manual_folder(dl_manager))
