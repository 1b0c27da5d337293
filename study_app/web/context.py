"""Which study the web app serves, and the one open package + store per process.

:func:`study_app.web.serve.serve` starts Streamlit in-process (``st.App``) with the study's
folder, database URL and options in environment variables, so the Streamlit script
(``app.py``), the extra HTTP routes (``routes.py``) and ``AppTest`` (which runs the script in the
test's process) all find the same study the same way. :func:`open_study` opens the package and
the store once per (folder, database) and keeps them for the life of the process: the Streamlit
script reruns on every click and must not reopen the database each time.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import StereobenchError

ENV_DIR = "STEREOBENCH_STUDY_DIR"
ENV_DB = "STEREOBENCH_STUDY_DB"
ENV_XR_EMULATOR = "STEREOBENCH_STUDY_XR_EMULATOR"

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"
VENDOR = HERE / "vendor"
IWER_VERSION = "2.5.0"
IWER_JS = VENDOR / f"iwer-{IWER_VERSION}.min.js"


@dataclass(frozen=True)
class WebConfig:
    """What one server serves: a study package folder and its database (None: the package's
    default SQLite file), and whether the headset page may load the WebXR emulator (tests)."""

    package_dir: Path
    db_url: str | None = None
    xr_emulator: bool = False

    def to_env(self) -> dict[str, str]:
        env = {ENV_DIR: str(self.package_dir), ENV_XR_EMULATOR: "1" if self.xr_emulator else ""}
        if self.db_url:
            env[ENV_DB] = self.db_url
        return env


def config_from_env() -> WebConfig:
    folder = os.environ.get(ENV_DIR, "")
    if not folder:
        raise StereobenchError(f"no study to serve: set {ENV_DIR} to a study folder or start the app with "
                               "`stereobench study serve DIR`")
    return WebConfig(Path(folder), os.environ.get(ENV_DB) or None, os.environ.get(ENV_XR_EMULATOR, "") == "1")


_lock = threading.Lock()
_open: dict[tuple[str, str | None], tuple[object, object]] = {}


def open_study(cfg: WebConfig):
    """(StudyPackage, StudyStore) of ``cfg``, opened once per process and folder/database."""
    from study_app.package import StudyPackage
    from study_app.store import StudyStore

    key = (str(Path(cfg.package_dir).resolve()), cfg.db_url)
    with _lock:
        if key not in _open:
            package = StudyPackage.load(cfg.package_dir)
            store = StudyStore.open(cfg.db_url, package) if cfg.db_url else StudyStore.open(None, package)
            _open[key] = (package, store)
        return _open[key]


def forget(cfg: WebConfig | None = None) -> None:
    """Drop the cached package and store (tests that rebuild a study in the same folder)."""
    with _lock:
        if cfg is None:
            _open.clear()
        else:
            _open.pop((str(Path(cfg.package_dir).resolve()), cfg.db_url), None)
