"""Dataset preparation: turn user-downloaded raw data (Stereo4D VR180 videos and annotations,
Ego4D stereo videos, M2SVid-layout folders) into the prepared store of
:mod:`benchmark.datasets.prepared`.

- :mod:`benchmark.dataprep.jobs`: run preparation jobs in parallel processes, sharded across
  machines, resumable, a bad job logged and skipped;
- :mod:`benchmark.dataprep.stereo4d`: Stereo4D npz + VR180 equirect video -> rectified 512x512
  pinhole pair + disparity;
- :mod:`benchmark.dataprep.m2svid_layout`: import M2SVid's ``left_rectified/ right_rectified/``
  folders;
- :mod:`benchmark.dataprep.ego4d`, :mod:`benchmark.dataprep.sgbm`: Ego4D stereo and the SGBM
  disparity with left-right consistency.

Import rule (tests/test_import_layers.py): this unit uses the ground floor, ``benchmark.stereo``
and ``benchmark.datasets`` only; never the runner, metrics, methods, commands or the CLI.
"""
