"""Resources shared by every stage: settings, embeddings, Qdrant, the LLM."""

import contextlib
import os

import dagster as dg
from qdrant_client import QdrantClient

from learning_pipeline.patterns.llm import LLMClient, LLMConfig
from learning_pipeline.scoring.embeddings import CachedEmbedder, SentenceTransformerEmbedder, cached_embedder
from learning_pipeline.settings import (
    ENV_LLM_API_KEY,
    ENV_LLM_BASE_URL,
    ENV_LLM_MODEL,
    Settings,
    load_settings,
)
from learning_pipeline.vector_store import qdrant_session


class PipelineResource(dg.ConfigurableResource):
    """Where telemetry comes from and where the pipeline writes; unset fields come from the
    environment and `config/pipeline.toml` (see `learning_pipeline.settings`)."""

    telemetry_dir: str | None = None
    data_dir: str | None = None
    config_file: str | None = None

    def settings(self) -> Settings:
        return load_settings(self.telemetry_dir, self.data_dir, self.config_file)


class EmbeddingResource(dg.ConfigurableResource):
    """sentence-transformers (the bundled all-MiniLM-L6-v2 unless a model directory is given),
    behind the persistent cache under the data dir: no text is embedded twice, across runs and
    processes. The model loads only when a text is not in the cache."""

    model_path: str | None = None
    batch_size: int = 64

    def model(self, settings: Settings):
        """The model behind the cache (tests substitute a small deterministic one here)."""
        return SentenceTransformerEmbedder(self.model_path or settings.embedding_model, batch_size=self.batch_size)

    def embedder(self, settings: Settings) -> CachedEmbedder:
        return cached_embedder(settings, self.model(settings))


class QdrantResource(dg.ConfigurableResource):
    """A Qdrant server when `url` (or LEARNING_PIPELINE_QDRANT_URL) is set, else local mode under
    the data dir. Local mode admits one process per folder: every asset that opens it is in the
    `qdrant` concurrency pool (limit 1, dagster.yaml), so runs take turns."""

    url: str | None = None
    api_key: str | None = None

    def client(self, settings: Settings) -> contextlib.AbstractContextManager[QdrantClient]:
        return qdrant_session(settings, url=self.url, api_key=self.api_key)


class LLMResource(dg.ConfigurableResource):
    """An OpenAI-compatible chat endpoint (llama.cpp server, Ollama, vLLM). Without a base URL
    (here or in LEARNING_PIPELINE_LLM_BASE_URL) the deterministic extractor runs instead."""

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    timeout_seconds: float = 60.0
    max_concurrency: int = 4
    max_retries: int = 3

    def client(self) -> LLMClient | None:
        base_url = self.base_url or os.environ.get(ENV_LLM_BASE_URL)
        if not base_url:
            return None
        config = {
            "base_url": base_url, "timeout_seconds": self.timeout_seconds,
            "max_concurrency": self.max_concurrency, "max_retries": self.max_retries,
        }
        model = self.model or os.environ.get(ENV_LLM_MODEL)
        if model:
            config["model"] = model
        api_key = self.api_key or os.environ.get(ENV_LLM_API_KEY)
        if api_key:
            config["api_key"] = api_key
        return LLMClient(LLMConfig(**config))


defs = dg.Definitions(
    resources={
        "pipeline": PipelineResource(),
        "embeddings": EmbeddingResource(),
        "qdrant": QdrantResource(),
        "llm": LLMResource(),
    }
)
