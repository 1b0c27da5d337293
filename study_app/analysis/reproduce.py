"""The ``stereobench analyze`` command line that reproduces an analysis, printed in every report.

Lives apart from :mod:`study_app.analysis.cli` so that the report can print the command
without importing the CLI (which imports the report: a cycle). The inverse, parsing the command
back into :class:`~study_app.analysis.pipeline.AnalysisOptions`, is
:func:`study_app.analysis.cli.options_from_args`; ``tests/test_analysis_schema.py`` checks the
round trip for every option.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable


def reproduce_command(sources: Iterable[str], options) -> str:
    """The ``stereobench analyze`` command line that reproduces ``options`` on ``sources``.

    ``options``: an :class:`~study_app.analysis.pipeline.AnalysisOptions`. Every option that
    changes a number is written out explicitly (also when it has its default value), so the
    command stays valid if a default changes; paths and lists are shell-quoted. The output
    folder is left as ``DIR``.
    """

    def num(v):
        return "none" if v is None else repr(float(v))

    rule = options.rule
    parts = ["stereobench", "analyze", *[shlex.quote(str(s)) for s in sources],
             "--seed", str(options.seed), "--n-boot", str(options.n_boot), "--n-perm", str(options.n_perm),
             "--n-boot-model", str(options.n_boot_model), "--wilcoxon", options.wilcoxon_method,
             "--alpha", repr(float(options.alpha)), "--incomplete", options.incomplete, "--on-invalid", options.on_invalid,
             "--max-attention-fail", num(rule.max_attention_fail_share), "--min-repeat-tau", num(rule.min_repeat_tau),
             "--min-repeat-agreement", num(rule.min_repeat_agreement), "--min-main-trials", str(rule.min_main_trials)]
    if options.methods:
        parts += ["--methods", shlex.quote(",".join(options.methods))]
    if rule.exclude:
        parts += ["--exclude", shlex.quote(",".join(rule.exclude))]
    return " ".join(parts + ["--out", "DIR"])
