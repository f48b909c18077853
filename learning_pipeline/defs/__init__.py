"""The Dagster layer: declarations only. Each module calls the matching core package."""
