"""Every setting of the pipeline, in one place.

Two layers, later wins:
1. `config/pipeline.toml` (or the file named by `LEARNING_PIPELINE_CONFIG`): sources, ingestion
   limits and, in later stages, scoring weights. A missing file means the built-in defaults.
2. Environment variables for where things live (`LEARNING_PIPELINE_TELEMETRY_DIR`,
   `LEARNING_PIPELINE_DATA_DIR`), because those differ per machine and per container.

The README's configuration table documents the same fields; `learning_pipeline_tests/test_settings.py`
keeps the two in step.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "config" / "pipeline.toml"
DEFAULT_SOURCES = ("ralph", "aidb", "hybrid", "vscode")

ENV_TELEMETRY_DIR = "LEARNING_PIPELINE_TELEMETRY_DIR"
ENV_DATA_DIR = "LEARNING_PIPELINE_DATA_DIR"
ENV_CONFIG_FILE = "LEARNING_PIPELINE_CONFIG"
ENV_EMBEDDING_MODEL = "LEARNING_PIPELINE_EMBEDDING_MODEL"
ENV_QDRANT_URL = "LEARNING_PIPELINE_QDRANT_URL"
ENV_QDRANT_API_KEY = "LEARNING_PIPELINE_QDRANT_API_KEY"
# Read by the LLM resource (defs/resources.py); unset base URL = the deterministic extractor.
ENV_LLM_BASE_URL = "LEARNING_PIPELINE_LLM_BASE_URL"
ENV_LLM_MODEL = "LEARNING_PIPELINE_LLM_MODEL"
ENV_LLM_API_KEY = "LEARNING_PIPELINE_LLM_API_KEY"


class ConfigError(ValueError):
    """A setting is invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """One telemetry source: the glob patterns (relative to the telemetry directory) of its files."""

    name: str
    patterns: tuple[str, ...]

    @classmethod
    def default_for(cls, name: str) -> SourceConfig:
        # The live file, its numbered/dated rotations, and gzip archives of either.
        return cls(
            name=name,
            patterns=(
                f"{name}-events.jsonl",
                f"{name}-events.jsonl.*",
                f"{name}-events-*.jsonl",
                f"{name}-events-*.jsonl.gz",
            ),
        )


class TelemetryConfig(_Strict):
    sources: tuple[SourceConfig, ...] = tuple(SourceConfig.default_for(s) for s in DEFAULT_SOURCES)
    # Files that match a source pattern but are never telemetry (editor swap files, half-copied files).
    ignore_suffixes: tuple[str, ...] = (".tmp", ".swp", ".lock", ".partial")
    # First day of the `raw_telemetry` date partitions; events dated earlier wait in staging.
    partition_start_date: dt.date = dt.date(2024, 1, 1)
    # A longer line is quarantined: one runaway line must not hold a run's memory hostage.
    max_line_bytes: int = Field(default=1_048_576, ge=1024)
    # Bytes one sensor tick lands at most, so a tick stays far inside Dagster's 60 s limit.
    max_bytes_per_tick: int = Field(default=64 * 1_048_576, ge=4096)
    # A rotated (no longer live) plain file whose last line has no newline for this long is taken
    # as finished, so its last event is not lost.
    rotated_tail_grace_seconds: float = Field(default=300.0, ge=0)
    sensor_interval_seconds: int = Field(default=30, ge=5)

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, sources: tuple[SourceConfig, ...]) -> tuple[SourceConfig, ...]:
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        for name in names:
            if not name or not all(c.isalnum() or c in "_-" for c in name):
                raise ValueError(f"source name {name!r} may only use letters, digits, '_' and '-'")
        if not names:
            raise ValueError("at least one source is needed")
        return sources

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sources)


class Settings(_Strict):
    telemetry_dir: Path
    data_dir: Path
    config_file: Path | None
    telemetry: TelemetryConfig = TelemetryConfig()
    # Directory of a sentence-transformers model; None = the bundled all-MiniLM-L6-v2.
    embedding_model: str | None = None
    # A Qdrant server; None = Qdrant local mode under <data_dir>/qdrant.
    qdrant_url: str | None = None
    qdrant_api_key: str | None = Field(default=None, repr=False)

    # Layout of everything the pipeline writes under data_dir.
    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

    @property
    def assets_dir(self) -> Path:
        return self.data_dir / "assets"

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "ingest.sqlite"

    @property
    def embedding_cache_path(self) -> Path:
        return self.data_dir / "embeddings" / "cache.sqlite"

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"


def _parse_sources(raw: object, where: str) -> list[dict]:
    """`[telemetry.sources]` maps a source name to its patterns (or `{}` for the default patterns)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [telemetry.sources] must be a table of source name -> settings")
    sources = []
    for name, value in raw.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: telemetry.sources.{name} must be a table (use {{}} for defaults)")
        unknown = set(value) - {"patterns"}
        if unknown:
            raise ConfigError(f"{where}: telemetry.sources.{name}: unknown key(s) {sorted(unknown)}")
        patterns = value.get("patterns")
        source = SourceConfig.default_for(name).model_dump()
        if patterns is not None:
            source["patterns"] = tuple(patterns)
        sources.append(source)
    return sources


def read_config_file(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _format_validation_error(exc: ValidationError, section: str, where: Path | str) -> str:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in (section, *err["loc"]))
        problems.append(f"{field}: {err['msg']}")
    return f"{where}: invalid configuration: " + "; ".join(problems)


def load_settings(
    telemetry_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Settings from explicit arguments, else the environment, else the defaults."""
    data = Path(data_dir or os.environ.get(ENV_DATA_DIR) or "data").expanduser().resolve()
    telemetry = Path(
        telemetry_dir or os.environ.get(ENV_TELEMETRY_DIR) or data / "telemetry" / "inbox"
    ).expanduser().resolve()
    named_config = config_file or os.environ.get(ENV_CONFIG_FILE)
    if named_config and not Path(named_config).expanduser().is_file():
        raise ConfigError(f"configuration file {named_config} (from {ENV_CONFIG_FILE}) does not exist")
    cfg_path = Path(named_config).expanduser().resolve() if named_config else DEFAULT_CONFIG_FILE
    raw = read_config_file(cfg_path) if cfg_path.is_file() else {}

    unknown_sections = set(raw) - KNOWN_SECTIONS
    if unknown_sections:
        raise ConfigError(f"{cfg_path}: unknown section(s) {sorted(unknown_sections)}")
    telemetry_raw = dict(raw.get("telemetry", {}))
    if "sources" in telemetry_raw:
        telemetry_raw["sources"] = _parse_sources(telemetry_raw["sources"], str(cfg_path))
    try:
        telemetry_cfg = TelemetryConfig.model_validate(telemetry_raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, "telemetry", cfg_path)) from exc
    config_file = cfg_path if cfg_path.is_file() else None
    # Each stage validates its own section; loading it here makes a bad value stop every command
    # (and the Dagster code location) at once, before anything runs.
    from learning_pipeline.scoring.config import load_scoring_config

    load_scoring_config(config_file)
    return Settings(
        telemetry_dir=telemetry,
        data_dir=data,
        config_file=config_file,
        telemetry=telemetry_cfg,
        embedding_model=os.environ.get(ENV_EMBEDDING_MODEL) or None,
        qdrant_url=os.environ.get(ENV_QDRANT_URL) or None,
        qdrant_api_key=os.environ.get(ENV_QDRANT_API_KEY) or None,
    )


# Sections later stages read from the same file; each stage validates its own section.
KNOWN_SECTIONS = {"telemetry", "scoring", "patterns", "embeddings", "qdrant", "llm"}
