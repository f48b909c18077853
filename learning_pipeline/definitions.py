"""The single entry point Dagster loads (`workspace.yaml`, `dagster dev` in the repo root)."""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
