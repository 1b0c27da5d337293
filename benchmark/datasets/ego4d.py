"""The ``ego4d`` dataset: Ego4D stereo clips prepared by ``stereobench prepare-data ego4d``
(:mod:`benchmark.dataprep.ego4d`), loaded through :class:`benchmark.datasets.prepared.PreparedDataset`.

Splits: ``test`` is M2SVid's official test split, 200 clips (150 frames each) of ONE video
(``c324287b-5b1c-4d26-9d21-8aceadaddda6``, clip indices 0-200 without 64), shipped with the
suite (``ego4d_test.json``), so ``--split test`` knows which clips it needs even before they are
prepared and lists exactly which are missing. Other split files the preparation wrote under
``<root>/splits/`` are selectable by name; no split = every prepared clip.

The paper's clip protocol (16 frames at 5 fps, short side 512, centre crop 512x512) is the
default. Because the test split is one video, per-clip scores are strongly correlated: a
bootstrap over its clips measures the variation within one scene, not across scenes (README,
"Ego4D stereo").

Options: ``root`` (the prepared folder; or set ``STEREOBENCH_EGO4D_ROOT``), ``split``,
``allow_missing``, ``verify``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmark.datasets.prepared import PreparedDataset, read_split

__all__ = ["Ego4DStereo", "official_test_split"]

TEST_SPLIT_FILE = Path(__file__).with_name("ego4d_test.json")


def official_test_split() -> list[str]:
    """The 200 clip ids of M2SVid's Ego4D test split (shipped, order as published)."""
    return list(json.loads(TEST_SPLIT_FILE.read_text(encoding="utf-8"))["clips"])


class Ego4DStereo(PreparedDataset):
    DATASET = "ego4d"
    DESCRIPTION = "Ego4D stereo clips (rectified, shifted, SGBM or user disparity), prepared locally"
    LICENCE = "Ego4D licence agreement (non-commercial research; the user signs it to download the videos)"
    URL = "https://ego4d-data.org/docs/start-here/"
    CITATION = "Grauman et al., Ego4D: Around the World in 3,000 Hours of Egocentric Video, CVPR 2022"
    PREPARE_HINT = ("stereobench prepare-data ego4d --videos <ego4d full_scale folder> --metadata ego4d.json "
                    "[--homographies <m2svid recrification_params_loftr_ransac>] --split test --out <root>")
    ENV_ROOT = "STEREOBENCH_EGO4D_ROOT"

    def __init__(self, root: str | os.PathLike | None = None, split: str | None = None,
                 allow_missing: bool = False, verify: bool = False):
        super().__init__(root=root, split=split, allow_missing=allow_missing, verify=verify, name="ego4d")

    def _split_ids(self, split: str) -> list[str]:
        if split == "test":
            return official_test_split()
        return read_split(self.root, split)
