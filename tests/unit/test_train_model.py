"""productlens train on a tiny synthetic fixture: the model directory, its numpy forward
pass, the in-process client answering the contract, and the Parquet reader's leniency."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

KIT = "gid://shopify/TaxonomyCategory/aa-1-1-2-2"  # Activewear Tops > T-Shirts
KIT_PATH = "Apparel & Accessories > Clothing > Activewear > Activewear Tops > T-Shirts"
RING = "gid://shopify/TaxonomyCategory/aa-6-9"
RING_PATH = "Apparel & Accessories > Jewelry > Rings"
SNEAKER = "gid://shopify/TaxonomyCategory/aa-8-8"
SNEAKER_PATH = "Apparel & Accessories > Shoes > Sneakers"
TEAMS = ["Arsenal", "Chelsea", "Liverpool", "Barcelona", "Juventus", "Ajax", "Porto", "Celtic", "Milan", "Benfica"]
METALS = ["Silver", "Gold", "Platinum", "Rose gold", "Titanium", "Steel", "Copper", "Brass", "Sterling", "Tungsten"]
STYLES = ["Runner", "Court", "Street", "Trail", "Canvas", "Retro", "Knit", "Leather", "Suede", "Skate"]


def fixture_records(category_for_all: str | None = None) -> list[dict]:
    """Football kits labelled as activewear T-shirts (as a merchant would, and not what the
    zero-shot model answers), rings and sneakers: 8 train and 2 validation rows each."""
    out = []
    for i in range(10):
        split = "train" if i < 8 else "validation"
        rows = [
            (f"{TEAMS[i]} home kit 2025", "Football Kit", KIT, {"color": ["Red" if i % 3 else "Blue"]}),
            (f"{METALS[i]} band ring", "Rings", RING, {"color": ["Silver"], "jewelry-material": ["Silver"]}),
            (f"{STYLES[i]} sneakers", "Sneakers", SNEAKER, {}),
        ]
        for title, kind, category, attributes in rows:
            out.append(
                {
                    "title": title,
                    "description": "",
                    "product_type": kind,
                    "vendor": "Fixture",
                    "tags": [kind.lower()],
                    "category_id": category_for_all or category,
                    "attributes": json.dumps(attributes),
                    "split": split,
                }
            )
    return out


def write_parquet(path: Path, records: list[dict], drop: tuple[str, ...] = ()) -> Path:
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k not in drop} for r in records]), path)
    return path


def train_cli(data: Path, name: str, out_root: Path, *extra: str) -> object:
    from pipelines.cli import app
    from taxonomy.loader import SAMPLE_TAXONOMY_DIR

    args = ["train", "--data", str(data), "--name", name, "--taxonomy", str(SAMPLE_TAXONOMY_DIR)]
    return CliRunner().invoke(app, [*args, "--out-root", str(out_root), *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    data = write_parquet(root / "train.parquet", fixture_records())
    result = train_cli(data, "fixture-v1", root)
    assert result.exit_code == 0, result.output
    return root / "fixture-v1"


def test_train_writes_a_triton_model_directory(trained: Path) -> None:
    from model_repository.product_trained.engine import read_parameters

    assert (trained / "1" / "model.py").is_file() and (trained / "1" / "weights.npz").is_file()
    params = read_parameters(trained / "config.pbtxt")
    assert params["model_version"] == "fixture-v1" and params["taxonomy_version"] == "2024-07"
    assert 'name: "fixture-v1"' in (trained / "config.pbtxt").read_text()
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["train_rows"] == 24 and metrics["validation_rows"] == 6 and metrics["trained_categories"] == 3
    # The point of training: the merchant's labelling of kits is learnt, zero-shot misses it.
    assert metrics["validation"]["hierarchical_f1"] >= metrics["validation_zero_shot"]["hierarchical_f1"]
    assert metrics["validation"]["hierarchical_f1"] > 0.9
    priors = json.loads((trained / "1" / "priors.json").read_text())
    assert priors[RING]["color"] == {"silver": 8}
    # Inference needs numpy only: the weights are plain arrays, no pickles.
    with np.load(trained / "1" / "weights.npz", allow_pickle=False) as z:
        assert z["coef"].shape[0] == 3


def _request(task: str, title: str, product_type: str = "", **extra: object) -> bytes:
    return json.dumps({"task": task, "product": {"title": title, "product_type": product_type}, **extra}).encode()


def test_in_process_client_answers_the_contract(trained: Path) -> None:
    from taxonomy.loader import SAMPLE_TAXONOMY_DIR
    from transforms.model.trained import InProcessTrained

    client = InProcessTrained(str(trained), str(SAMPLE_TAXONOMY_DIR))()
    meta = client.metadata()
    assert (meta.name, meta.model_version, meta.taxonomy_version) == ("fixture-v1", "fixture-v1", "2024-07")
    extract = _request(
        "extract",
        "Silver band ring",
        category={"id": RING, "full_name": RING_PATH},
        attributes=[{"handle": "color", "name": "Color", "values": ["Gold", "Silver"]}],
    )
    answers = client.infer_batch(
        [(_request("classify", "Roma away kit 2025", "Football Kit"), None), (extract, None), (b"{not json", None)]
    )
    classify = json.loads(answers[0])
    assert classify["category"] == KIT_PATH
    assert 0.0 <= classify["confidence"] <= 1.0 and classify["candidates"]
    assert "simplified_description" in classify
    assert json.loads(answers[1])["attributes"].get("color") == ["Silver"]
    assert "error" in json.loads(answers[2])
    client.close()


def test_untrained_categories_fall_back_to_zero_shot(trained: Path) -> None:
    from model_repository.contract import ModelProduct
    from model_repository.product_baseline.engine import BaselineModel
    from model_repository.product_trained.engine import TrainedModel, features
    from taxonomy.loader import SAMPLE_TAXONOMY_DIR, load_taxonomy

    baseline = BaselineModel(load_taxonomy(SAMPLE_TAXONOMY_DIR))
    model = TrainedModel(trained, baseline=baseline)
    leash = ModelProduct(title="Dog leash", product_type="Dog Supplies")
    kit = ModelProduct(title="Roma away kit 2025", product_type="Football Kit")
    own = model.own_probabilities([leash, kit])
    zero = baseline.retriever.probabilities([leash, kit])
    x, _ = features(baseline, [leash, kit], model.class_index)
    gate = model.weights.gate(x)
    # A product unlike the training rows is answered by the zero-shot model alone; one
    # like them by the blend.
    assert gate[0] == 0.0 and gate[1] > 0.5
    np.testing.assert_allclose(own[0], zero[0], rtol=1e-5, atol=1e-9)
    assert model.rank([leash])[0].index == baseline.rank([leash])[0].index
    untrained = np.setdiff1d(np.arange(own.shape[1]), model.class_index)
    # Categories without training data keep their zero-shot ranking, scaled by (1 - alpha * gate).
    shrink = 1 - model.weights.alpha * gate[1]
    np.testing.assert_allclose(own[1, untrained], shrink * zero[1, untrained], rtol=1e-5, atol=1e-9)


def test_reader_tolerates_missing_optional_columns(tmp_path: Path) -> None:
    from training.model.data import TrainingDataError, read_paths, read_rows

    records = fixture_records()[:3] + [{"title": "", "category_id": KIT}]
    rows, skipped = read_rows(
        write_parquet(tmp_path / "d.parquet", records, drop=("description", "vendor", "tags", "attributes", "split"))
    )
    assert len(rows) == 3 and skipped == 1 and rows[0].split == "train" and rows[0].attributes == {}
    with pytest.raises(TrainingDataError, match="category_id"):
        read_rows(write_parquet(tmp_path / "bad.parquet", records, drop=("category_id",)))
    with pytest.raises(TrainingDataError):
        read_rows(tmp_path / "missing.parquet")
    # A dataset build directory: train/validation/test.parquet side by side.
    (tmp_path / "ds").mkdir()
    records = fixture_records()
    write_parquet(tmp_path / "ds" / "train.parquet", [r for r in records if r["split"] == "train"])
    write_parquet(tmp_path / "ds" / "validation.parquet", [r for r in records if r["split"] == "validation"])
    rows, _ = read_paths([tmp_path / "ds"])
    assert sorted({r.split for r in rows}) == ["train", "validation"] and len(rows) == len(records)


def test_train_refuses_bad_names_and_existing_models(trained: Path, tmp_path: Path) -> None:
    data = write_parquet(tmp_path / "t.parquet", fixture_records())
    assert train_cli(data, "Bad Name!", tmp_path).exit_code == 2
    assert train_cli(data, trained.name, trained.parent).exit_code == 2  # exists, no --overwrite
    empty = write_parquet(tmp_path / "e.parquet", fixture_records(category_for_all="gid://shopify/TaxonomyCategory/x"))
    result = train_cli(empty, "empty", tmp_path)
    assert result.exit_code == 2 and "no training rows" in result.output


def test_backfill_runs_a_trained_model_directory(trained: Path) -> None:
    from pipelines.backfill import BackfillOptions, model_factory
    from pipelines.options import build_options
    from transforms.model.trained import InProcessTrained

    options = build_options(BackfillOptions, {"input": "in.jsonl", "output": "out", "model_dir": str(trained)}, [])
    factory = model_factory(options)
    assert isinstance(factory, InProcessTrained) and factory.model_dir == str(trained)


def test_evaluate_runs_a_trained_model_directory(trained: Path) -> None:
    from pipelines.backfill import model_factory
    from pipelines.evaluate import evaluation_options
    from transforms.model.trained import InProcessTrained

    factory = model_factory(evaluation_options("golden.jsonl", "out", model_dir=str(trained)))
    assert isinstance(factory, InProcessTrained) and factory.model_dir == str(trained)


def test_triton_entry_point_serves_the_model(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1/model.py under a stand-in for Triton's pb_utils: the config parameters load and check,
    and a batch of two requests gets one RESPONSE each."""
    import importlib.util
    import sys
    import types

    class Tensor:
        def __init__(self, name: str, array: np.ndarray) -> None:
            self.name, self.array = name, array

        def as_numpy(self) -> np.ndarray:
            return self.array

    class Response:
        def __init__(self, output_tensors: list[Tensor], error: object = None) -> None:
            self.output_tensors, self.error = output_tensors, error

    logger = types.SimpleNamespace(log_info=lambda m: None, log_warn=lambda m: None, log_error=lambda m: None)
    pb = types.ModuleType("triton_python_backend_utils")
    pb.Logger = logger  # type: ignore[attr-defined]
    pb.Tensor = Tensor  # type: ignore[attr-defined]
    pb.InferenceResponse = Response  # type: ignore[attr-defined]
    pb.TritonError = type("TritonError", (Exception,), {})  # type: ignore[attr-defined]
    pb.get_input_tensor_by_name = lambda request, name: request.get(name)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    spec = importlib.util.spec_from_file_location("trained_triton_model", trained / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]

    from model_repository.product_trained.engine import read_parameters

    params = {k: {"string_value": v} for k, v in read_parameters(trained / "config.pbtxt").items()}
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps({"name": trained.name, "parameters": params})})
    batch = np.array(
        [[_request("classify", "Roma away kit 2025", "Football Kit")], [_request("classify", "Gold ring")]]
    )
    responses = model.execute([{"REQUEST": Tensor("REQUEST", batch)}])
    assert len(responses) == 1 and responses[0].error is None
    answers = [json.loads(x) for x in responses[0].output_tensors[0].as_numpy()[:, 0]]
    assert answers[0]["category"] == KIT_PATH and len(answers) == 2
