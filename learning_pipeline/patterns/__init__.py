"""Pattern extraction: LLM (OpenAI-compatible chat endpoint) or deterministic, plus routing.

Plain Python, no Dagster imports; the Dagster layer (`defs/patterns.py`) calls these functions.
"""

from learning_pipeline.patterns.cache import CacheEntry, ExtractionCache
from learning_pipeline.patterns.deterministic import deterministic_pattern
from learning_pipeline.patterns.extract import (
    PROMPT_VERSION,
    Extraction,
    build_messages,
    extract_patterns,
    extraction_blocker,
    repair_messages,
)
from learning_pipeline.patterns.llm import LLMClient, LLMConfig, LLMError, LLMResult
from learning_pipeline.patterns.routing import COLLECTIONS, route
from learning_pipeline.patterns.schema import Pattern, PatternParseError, parse_pattern_json

__all__ = [
    "COLLECTIONS",
    "PROMPT_VERSION",
    "CacheEntry",
    "Extraction",
    "ExtractionCache",
    "LLMClient",
    "LLMConfig",
    "LLMError",
    "LLMResult",
    "Pattern",
    "PatternParseError",
    "build_messages",
    "deterministic_pattern",
    "extract_patterns",
    "extraction_blocker",
    "parse_pattern_json",
    "repair_messages",
    "route",
]
