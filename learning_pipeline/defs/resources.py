"""Resources shared by every stage."""


import dagster as dg

from learning_pipeline.settings import Settings, load_settings


class PipelineResource(dg.ConfigurableResource):
    """Where telemetry comes from and where the pipeline writes; unset fields come from the
    environment and `config/pipeline.toml` (see `learning_pipeline.settings`)."""

    telemetry_dir: str | None = None
    data_dir: str | None = None
    config_file: str | None = None

    def settings(self) -> Settings:
        return load_settings(self.telemetry_dir, self.data_dir, self.config_file)


defs = dg.Definitions(resources={"pipeline": PipelineResource()})
