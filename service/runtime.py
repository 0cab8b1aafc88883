"""What the service needs loaded before it can answer: the taxonomy, the model client and
one product core per batch worker.

Built from the same settings and the same factory (`transforms.model.factory`) as the
batch jobs, so a product gets the same answer online and in a backfill.
"""

from __future__ import annotations

from dataclasses import dataclass

from taxonomy.corrector import CategoryCorrector
from taxonomy.model import Taxonomy
from taxonomy.values import ValueNormaliser
from transforms.config import PredictSettings
from transforms.core import CoreConfig, ProductCore
from transforms.model.client import ModelClient, ModelMetadata
from transforms.model.factory import model_factory_of

__all__ = ["Runtime", "core_config_of", "load_runtime"]


@dataclass
class Runtime:
    taxonomy: Taxonomy
    client: ModelClient
    metadata: ModelMetadata
    # One per batch worker: a ProductCore is not thread-safe; they share the model client,
    # the corrector and the normaliser, which are.
    cores: list[ProductCore]

    def close(self) -> None:
        self.client.close()


def core_config_of(settings: PredictSettings) -> CoreConfig:
    """The core's settings, exactly as `productlens backfill` derives them."""
    return CoreConfig(
        images=settings.image_config(),
        image_base_dir=settings.image_base_dir,
        batching=settings.batch_config(),
        classify_candidates=settings.classify_candidates,
    )


def load_runtime(settings: PredictSettings, workers: int = 1) -> Runtime:
    """Load the taxonomy and connect to (or load) the model. Raises what the batch jobs
    raise: TaxonomyError, TaxonomyVersionMismatch, a model connection error."""
    from transforms.shared import shared_taxonomy

    taxonomy = shared_taxonomy(settings.taxonomy)
    client = model_factory_of(settings)()
    try:
        metadata = client.metadata()
        config = core_config_of(settings)
        first = ProductCore(
            client,
            taxonomy,
            config,
            metadata=metadata,
            corrector=CategoryCorrector(taxonomy),
            normaliser=ValueNormaliser(taxonomy),
        )
        cores = [first] + [
            ProductCore(
                client,
                taxonomy,
                config,
                metadata=metadata,
                corrector=first.corrector,
                normaliser=first.normaliser,
                retriever=first.retriever,
            )
            for _ in range(workers - 1)
        ]
    except BaseException:
        client.close()
        raise
    return Runtime(taxonomy, client, metadata, cores)
