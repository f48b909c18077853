"""The Dagster instance the CLI records its runs in: the same one the UI shows."""

from __future__ import annotations

import os
from pathlib import Path

from learning_pipeline.settings import PROJECT_ROOT, Settings


def ensure_dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME as set, else `<data_dir>/dagster_home` using the project's `dagster.yaml`.

    A DAGSTER_HOME the user chose is left exactly as it is.
    """
    chosen = os.environ.get("DAGSTER_HOME")
    if chosen:
        return Path(chosen)
    home = settings.data_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    instance_yaml = home / "dagster.yaml"
    project_yaml = PROJECT_ROOT / "dagster.yaml"
    if not instance_yaml.exists() and not instance_yaml.is_symlink() and project_yaml.exists():
        instance_yaml.symlink_to(project_yaml)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
