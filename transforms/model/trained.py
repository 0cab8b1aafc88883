"""In-process client for a trained model directory (`productlens train` output).

Like `InProcessBaseline`: a picklable factory; the model (a `TrainedModel` over a
`BaselineModel`) is made once per process, directory and taxonomy (Beam's `Shared`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transforms.model.client import ModelClient, _InProcessBaselineClient

__all__ = ["InProcessTrained", "is_trained_model_dir"]


def is_trained_model_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / "config.pbtxt").is_file() and (p / "1" / "weights.npz").is_file()


def _trained_client(model_dir: str, taxonomy_path: str | None, backoff_threshold: float | None) -> ModelClient:
    from model_repository.product_baseline.engine import BaselineModel
    from model_repository.product_trained.engine import TrainedModel, read_parameters, resolve_taxonomy_path
    from transforms.shared import shared_taxonomy

    if taxonomy_path is None:
        # The taxonomy it was trained on, unless the pipeline names one (its version is
        # then checked against the pipeline's like any model's).
        config = read_parameters(Path(model_dir) / "config.pbtxt")
        taxonomy_path = resolve_taxonomy_path(config.get("taxonomy_path", ""), Path(model_dir))
    baseline = BaselineModel(shared_taxonomy(taxonomy_path), backoff_threshold=backoff_threshold)
    # Same locking and metadata as the baseline's client: TrainedModel has its interface.
    return _InProcessBaselineClient(TrainedModel(model_dir, baseline=baseline))


@dataclass(frozen=True)
class InProcessTrained:
    """Factory for a trained model running inside the worker process."""

    model_dir: str
    taxonomy_path: str | None = None
    backoff_threshold: float | None = None

    def __post_init__(self) -> None:
        if not is_trained_model_dir(self.model_dir):
            raise ValueError(f"{self.model_dir} is not a trained model directory (config.pbtxt and 1/weights.npz)")

    def __call__(self) -> ModelClient:
        from transforms.shared import acquire_shared

        model_dir = str(Path(self.model_dir).resolve())
        path, threshold = self.taxonomy_path, self.backoff_threshold
        key = (model_dir, path, threshold)
        return acquire_shared("trained", key, lambda: _trained_client(model_dir, path, threshold))
