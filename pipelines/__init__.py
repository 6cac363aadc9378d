"""tfx-qat pipelines: data ingestion, the pipeline definition, runners and the CLI; imported as
``tfx_qat.pipelines``."""
import tfx_qat

tfx_qat.old_name_guard(__name__)
