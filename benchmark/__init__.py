"""stereobench harness: datasets, the shared stereo stage, metrics, runner, results and leaderboards."""

__version__ = "0.1.0"
