"""The ``stereo4d`` dataset: Stereo4D clips prepared by ``stereobench prepare-data stereo4d``
(:mod:`benchmark.dataprep.stereo4d`) or imported from M2SVid's layout (``prepare-data m2svid``),
loaded through :class:`benchmark.datasets.prepared.PreparedDataset`.

Splits: ``train`` and ``test`` are the annotation bucket's folders (the official split);
``m2svid-test`` (388 ids) and ``m2svid-val64`` (64 ids) are M2SVid's lists, shipped with the suite
(``stereo4d_m2svid_test.json``, ``stereo4d_m2svid_val64.json``) and matched to annotation files
by YouTube id at preparation time. M2SVid names clips ``<ytid>-clip<N>`` (Google-internal), the
bucket ``<ytid>_<first_ts>``, and no public mapping exists: one clip per video in the test list
makes the YouTube id a usable key, but the matched clip may not be the paper's clip (which npz
was used is recorded in each clip's source metadata and in
``<root>/stereo4d_m2svid_matches.json``). No split = every prepared clip.

The paper's clip protocol (16 frames at 5 fps from the start, 512x512) is the default.

Options: ``root`` (the prepared folder; default ``$STEREOBENCH_STEREO4D_ROOT`` or
``data/stereo4d``), ``split``, ``allow_missing``, ``verify``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from benchmark.datasets.prepared import PreparedDataset, list_splits, read_split
from benchmark.errors import did_you_mean

__all__ = ["SPLITS", "Stereo4D"]

SPLITS = ("train", "test", "m2svid-test", "m2svid-val64")
DEFAULT_ROOT = "data/stereo4d"


class Stereo4D(PreparedDataset):
    DATASET = "stereo4d"
    DESCRIPTION = "Stereo4D VR180 clips rectified to 512x512 60-degree pinhole pairs, prepared locally"
    LICENCE = ("annotations CC-BY-4.0 (Google, gs://stereo4d); the videos are YouTube uploads under their "
               "owners' terms, downloaded by the user")
    URL = "https://stereo4d.github.io"
    CITATION = "Jin et al., Stereo4D: Learning How Things Move in 3D from Internet Stereo Videos, CVPR 2025"
    PREPARE_HINT = ("stereobench prepare-data stereo4d --annotations <npz folder with train/ test/> --raw <VR180 "
                    "videos> [--flows <flow pickles>] --out <root>")
    ENV_ROOT = "STEREOBENCH_STEREO4D_ROOT"

    def __init__(self, root: str | os.PathLike | None = None, split: str | None = None,
                 allow_missing: bool = False, verify: bool = False):
        if root is None and not os.environ.get(self.ENV_ROOT):
            root = DEFAULT_ROOT
        if split not in (None, "", "all") and Path(root or os.environ[self.ENV_ROOT]).expanduser().is_dir():
            present = list_splits(Path(root or os.environ[self.ENV_ROOT]).expanduser())
            if split not in SPLITS and split not in present:
                raise did_you_mean(str(split), sorted(set(SPLITS) | set(present)), "stereo4d split")
        super().__init__(root=root, split=split, allow_missing=allow_missing, verify=verify, name="stereo4d")

    def _split_ids(self, split: str) -> list[str]:
        return read_split(self.root, split)

    def m2svid_matches(self) -> dict[str, Any]:
        """M2SVid list id -> matched clip id (None when no annotation had its YouTube id), per list,
        as recorded by the preparation (empty when it did not record them)."""
        try:
            return json.loads((self.root / "stereo4d_m2svid_matches.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        if self.split in ("m2svid-test", "m2svid-val64"):
            matches = self.m2svid_matches().get(self.split, {})
            out["m2svid_unmatched"] = sorted(k for k, v in matches.items() if v is None)
            out["m2svid_note"] = ("M2SVid ids matched by YouTube id; clip identity with the paper's clips is not "
                                  "guaranteed")
        return out
