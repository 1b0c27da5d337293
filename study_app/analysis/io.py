"""Reading exported response files: CSV / Parquet tables and YAML aggregate counts.

:func:`read_table` turns one file into an uninterpreted DataFrame (strings for CSV, the stored
dtypes for Parquet); :func:`load_responses` reads several, detects each table's kind, checks
the schema version, validates with :mod:`study_app.analysis.schema` and concatenates tables of
the same kind into :class:`~study_app.analysis.schema.Responses`.

Kept apart from ``schema.py`` on purpose: the schema (column definitions and validation) must
import only pandas, so the Streamlit study app can use it without pulling in the statistics;
reading aggregate files needs :mod:`study_app.analysis.aggregate`, which needs scipy.

Every problem a user can cause (a missing, empty, unreadable or non-UTF-8 file, a corrupt
Parquet, an unknown extension, a table of an unknown kind or schema version) raises
:class:`~benchmark.errors.StereobenchError` naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.errors import StereobenchError
from study_app.analysis.schema import (_KEY_PAIRWISE, _KEY_RANKING, SCHEMA_VERSION, Responses, detect_kind,
                                       validate_pairwise, validate_rankings)

TABLE_SUFFIXES = (".csv", ".txt", ".parquet", ".pq")
AGGREGATE_SUFFIXES = (".yaml", ".yml", ".json")


def check_readable(path: str | Path, what: str = "responses file") -> Path:
    """``path`` as a Path if it names an existing regular file; else a one-line error."""
    path = Path(path)
    if not path.exists():
        raise StereobenchError(f"{what} {str(path)!r} does not exist; pass the CSV/Parquet/YAML the study app exported")
    if path.is_dir():
        raise StereobenchError(f"{what} {str(path)!r} is a folder; pass the exported file(s) inside it")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES + AGGREGATE_SUFFIXES:
        raise StereobenchError(f"{str(path)!r}: unknown file type {suffix or '(none)'!r}; use .csv, .parquet or .yaml "
                               "(aggregate counts)")
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file without interpretation (CSV cells as strings, empty = NA).

    CSV must be UTF-8 (a BOM is accepted). Returns the DataFrame, possibly with zero rows.
    """
    path = check_readable(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise StereobenchError(f"{str(path)!r} is an aggregate file, not a response table; pass it to `stereobench analyze`")
    if path.stat().st_size == 0:
        raise StereobenchError(f"{str(path)!r} is empty (0 bytes); export the study responses again")
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        # utf-8-sig: spreadsheet programs often prepend a BOM, which would otherwise end up in
        # the first column's name and make a required column look missing.
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StereobenchError(f"{str(path)!r} is not UTF-8 text (byte {exc.start}: {exc.reason}); save the CSV as "
                               "UTF-8 and retry") from None
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise StereobenchError(f"cannot read {str(path)!r} ({type(exc).__name__}: {first}); is it a valid "
                               f"{suffix[1:]} file? Export it again") from None


def _check_versions(raw: pd.DataFrame, source: str) -> None:
    """Every schema_version in the file has the major number of :data:`SCHEMA_VERSION`.

    Checked before validation: a table from another major version may have other columns, and
    its version is the useful thing to report, not the column it lacks.
    """
    if "schema_version" not in raw.columns:
        return
    versions = raw["schema_version"].dropna().astype(str).str.strip()
    versions = [v for v in dict.fromkeys(versions) if v]
    bad = [v for v in versions if v.split(".")[0] != SCHEMA_VERSION.split(".")[0]]
    if bad:
        mixed = f" (the file mixes versions {', '.join(map(repr, versions))})" if len(versions) > 1 else ""
        raise StereobenchError(f"{source!r}: schema_version {bad[0]!r} is not compatible with {SCHEMA_VERSION!r}{mixed}; "
                               "export again with a matching study app or upgrade stereobench")


def load_responses(paths, on_invalid: str = "error") -> Responses:
    """Read response files (CSV / Parquet tables, YAML aggregate counts) into :class:`Responses`.

    Several files of the same kind are concatenated (each validated on its own first, so error
    messages name the file and row). Every file is checked to be readable before any is parsed.
    """
    from study_app.analysis import aggregate

    if on_invalid not in ("error", "exclude"):
        raise StereobenchError(f"on_invalid must be 'error' or 'exclude', not {on_invalid!r}")
    paths = [check_readable(p) for p in paths]
    res = Responses()
    parts: dict[str, list[pd.DataFrame]] = {"rankings": [], "pairwise": []}
    logs = []
    for path in paths:
        res.sources.append(str(path))
        if path.suffix.lower() in AGGREGATE_SUFFIXES:
            res.aggregates.append(aggregate.load_aggregate(path))
            continue
        raw = read_table(path)
        if len(raw) == 0:
            raise StereobenchError(f"{str(path)!r} has no rows; export the study responses again")
        _check_versions(raw, str(path))
        kind = detect_kind(raw, str(path))
        validate = validate_rankings if kind == "rankings" else validate_pairwise
        table, log = validate(raw, str(path), on_invalid)
        parts[kind].append(table)
        logs.append(log)
    for kind, tables in parts.items():
        if tables:
            merged = pd.concat(tables, ignore_index=True)
            if merged.duplicated(subset=list(_KEY_RANKING if kind == "rankings" else _KEY_PAIRWISE)).any():
                raise StereobenchError(f"the {kind} files overlap: the same (participant, trial) appears in two files; "
                                       "pass each export once")
            setattr(res, kind, merged)
    nonempty = [log for log in logs if len(log)]
    if nonempty:
        res.exclusions = pd.concat(nonempty, ignore_index=True)
    if res.rankings is None and res.pairwise is None and not res.aggregates:
        raise StereobenchError("no responses given; pass one or more CSV/Parquet exports or aggregate YAML files")
    return res
