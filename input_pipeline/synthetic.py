"""TFDS builder for the synthetic talking-head corpus (`thflax.synthetic`), generated offline.

The raw corpus (GRID layout: videos, 16 kHz wavs, .align files) is generated into the download
folder on first build, or read from --manual_dir if a corpus made with
`python -m thflax.synthetic.corpus` is there. It is then prepared exactly like GRID: videos are
landmarked by dlib; the renderer's ground truth (`synthetic_truth/`) is never read.
"""

from __future__ import annotations

import os

from input_pipeline import builder_base
from input_pipeline.grid import find_grid_items

_C = builder_base.TalkingHeadConfig
CONFIGS = [
    _C(name="tiny", crop_size=64, num_speakers=2, utterances_per_speaker=6, seed=0,
       description="2 speakers x 6 utterances, 64x64 crops: unit tests"),
    _C(name="small", crop_size=64, num_speakers=4, utterances_per_speaker=40, seed=1,
       description="4 speakers x 40 utterances, 64x64 crops: learning tests and the demo"),
    _C(name="medium", crop_size=128, num_speakers=6, utterances_per_speaker=100, seed=2,
       description="6 speakers x 100 utterances, 128x128 crops: ablation table"),
    _C(name="large", crop_size=256, num_speakers=10, utterances_per_speaker=300, seed=3,
       description="10 speakers x 300 utterances, 256x256 crops"),
]


class SyntheticTalkingHeads(builder_base.TalkingHeadBuilder):
    """Astronaut-photo talking heads speaking GRID sentences with eSpeak NG voices."""

    BUILDER_CONFIGS = CONFIGS
    DEFAULT_CONFIG_NAME = "small"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Nothing to download. Optionally pass --manual_dir pointing to a corpus made with
    `python -m thflax.synthetic.corpus --out DIR ...`; otherwise the builder generates one.
    """

    def corpus_dir(self, dl_manager) -> str:
        try:
            manual = os.fspath(dl_manager.manual_dir)
        except AssertionError:  # TFDS raises when the manual folder does not exist: generate instead
            manual = ""
        if manual and os.path.exists(os.path.join(manual, "corpus.json")):
            return manual
        from thflax.synthetic import corpus

        cfg = self.builder_config
        out = os.path.join(os.fspath(dl_manager.download_dir), "synthetic_corpus", cfg.name)
        if os.path.exists(os.path.join(out, "corpus.json")):  # written last: the corpus is complete
            return out
        corpus.generate_corpus(out, num_speakers=cfg.num_speakers,
                               utterances_per_speaker=cfg.utterances_per_speaker, seed=cfg.seed,
                               num_workers=self.num_workers)
        return out

    def _find_items(self, dl_manager):
        return find_grid_items(self.corpus_dir(dl_manager))
