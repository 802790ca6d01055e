"""TFDS builder for the synthetic talking-head corpus (`thflax.synthetic`), generated offline.

The raw corpus (GRID layout: videos, 16 kHz wavs, .align files) is generated into the download
folder on first build, or read from --manual_dir if a corpus made with
`python -m thflax.synthetic.corpus` is there. It is then prepared exactly like GRID: videos are
landmarked by dlib; the renderer's ground truth (`synthetic_truth/`) is never read.

Config `people` draws its speakers from real portraits (`thflax.synthetic.portraits`: the astronaut
and face_recognition's photos of Obama and Biden, fetched on first use; morphs of two different
people, mirror images, colour/illumination/scale/background changes) and splits by identity: every
speaker made of the held-out identity (default "biden") is `test`, and no `train` speaker involves it
(`thflax.synthetic.corpus.identity_split` on the corpus manifest). `validation` is 10% of each
training speaker's utterances, not trained on: held-out identities stay in `test` alone
(`identity_splits`). The other configs split like GRID (`input_pipeline.preprocess.split_items`).

Config `grid_like` is `small`'s size with frontal, nearly still heads (head motion scaled by 0.25):
the kind of data of the paper's Table 2 (GRID); the others have the natural head motion of its
Table 1 data. `python reproduce.py --config.data.name=synthetic_talking_heads/grid_like`.
"""

from __future__ import annotations

import dataclasses
import json
import os

from input_pipeline import builder_base, preprocess
from input_pipeline.grid import find_grid_items
from thflax.errors import InputError


@dataclasses.dataclass(eq=False)
class PeopleConfig(builder_base.TalkingHeadConfig):
    """A corpus of many identities from portraits, split by identity."""

    portraits: str = "builtin"  # "builtin" or a folder of portraits
    holdout: tuple[str, ...] = ("biden",)  # identities whose speakers form the test split
    test_fraction: float = 0.25  # share of the speakers made of held-out identities


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
    PeopleConfig(name="people", crop_size=128, num_speakers=12, utterances_per_speaker=20, seed=4,
                 split_by="identity",
                 description="12 speakers x 20 utterances, 128x128 crops, from real portraits and morphs "
                             "of different people; test = the 3 speakers of the held-out identity "
                             "(biden), never seen in training"),
    PeopleConfig(name="people_small", crop_size=64, num_speakers=8, utterances_per_speaker=16, seed=5,
                 split_by="identity",
                 description="8 speakers x 16 utterances, 64x64 crops, split by identity like `people`: "
                             "the learning tests"),
    # GRID (Cooke et al. 2006) films seated speakers facing the camera: heads are frontal and move by a
    # few pixels. Head motion at 1/4 of the default (the same trajectories' deviation from the frontal
    # rest pose x0.25, `head_motion.head_poses`) bounds yaw by ±3.5°, pitch ±2.5°, roll ±2.3°, shifts by ±3 / ±2
    # px (the default's limits x0.25; over 8 utterances an utterance's largest |yaw| is 2.3° on average,
    # default 9.3°), and moves the face's outline points by ~1 px std / ~3 px over an utterance at 360x288
    # (default ~4 / ~12 px), ~3 % of the face's width: the GRID kind of data of the paper's Table 2, where
    # the pixel metrics are not dominated by an unpredictable head pose. The other configs have the
    # natural head motion of its Table 1 data.
    _C(name="grid_like", crop_size=64, num_speakers=4, utterances_per_speaker=40, seed=6, head_motion_scale=0.25,
       description="4 speakers x 40 utterances, 64x64 crops, frontal and nearly still heads like GRID (head "
                   "motion x0.25: yaw within ±3.5°, ~3 px of drift at 360x288): Table 2"),
]


def identity_splits(items: list[preprocess.Item], manifest: dict,
                    holdout: tuple[str, ...]) -> dict[str, list[preprocess.Item]]:
    """{"train", "validation", "test": utterances} of a portrait corpus, split by identity.

    test = every utterance of the speakers made only of held-out identities; validation = 10% of each
    training speaker's utterances (by hash, as `preprocess.split_items`), train = the rest of them.
    Speakers mixing held-out and training identities are in no split (`corpus.identity_split`), so a
    held-out identity is never trained on nor used for tuning.
    """
    from thflax.synthetic import corpus

    train_spk, test_spk = corpus.identity_split(manifest, holdout)
    keep = set(train_spk) | set(test_spk)
    if not test_spk:  # split_items would then pick test speakers by hash: nothing is held out
        parts = preprocess.split_items([it for it in items if it.speaker in keep], "utterance", (), 0.0)
        return {**parts, "test": []}
    return preprocess.split_items([it for it in items if it.speaker in keep], "speaker", tuple(test_spk))


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
        if isinstance(cfg, PeopleConfig):
            corpus.generate_corpus(out, num_speakers=cfg.num_speakers,
                                   utterances_per_speaker=cfg.utterances_per_speaker, seed=cfg.seed,
                                   num_workers=self.num_workers, portraits=cfg.portraits,
                                   holdout=tuple(cfg.holdout), test_fraction=cfg.test_fraction,
                                   head_motion_scale=cfg.head_motion_scale)
        else:
            corpus.generate_corpus(out, num_speakers=cfg.num_speakers,
                                   utterances_per_speaker=cfg.utterances_per_speaker, seed=cfg.seed,
                                   num_workers=self.num_workers, head_motion_scale=cfg.head_motion_scale)
        return out

    def _find_items(self, dl_manager):
        return find_grid_items(self.corpus_dir(dl_manager))

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        if not isinstance(cfg, PeopleConfig):
            return super()._split_generators(dl_manager)
        # Split by identity: test = speakers made of held-out identities only, train + validation =
        # speakers with none of them (speakers mixing both, possible in a corpus made without
        # --holdout, in neither).
        folder = self.corpus_dir(dl_manager)
        items = find_grid_items(folder)
        if not items:
            raise InputError(f"no utterances found for {self._full_name} in {folder}: "
                             f"expected {self.EXPECTED_INPUT}")
        with open(os.path.join(folder, "corpus.json")) as f:
            manifest = json.load(f)
        # The config's held-out identities, or those the corpus was made with (a --manual_dir corpus
        # of the user's own people).
        holdout = tuple(cfg.holdout)
        known = {i for d in manifest.get("speakers", {}).values() for i in d.get("identities") or ()}
        if not set(holdout) & known and manifest.get("holdout_identities"):
            holdout = tuple(manifest["holdout_identities"])

        def empty(split: str) -> str:
            why = " (it takes 10% of each training speaker's utterances, from those with 2 or more)"
            return (f"split {split!r} of {self._full_name} would be empty{why if split == 'validation' else ''}: "
                    f"held-out identities {', '.join(holdout) or '(none)'}; speakers' identities in "
                    f"{folder}: {', '.join(sorted(known)) or '(none recorded)'}")

        parts = builder_base.checked_splits(identity_splits(items, manifest, holdout), self._full_name, empty)
        return self._split_examples(dl_manager, parts)
