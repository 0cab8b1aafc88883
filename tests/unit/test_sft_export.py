"""The SFT export (training/sft): prompts identical to serving, targets in the contract's
shape, label masking, the manifest, and bad rows counted without failing the export."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Regex, Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Split

from model_repository.contract import (
    ModelAttribute,
    ModelCategory,
    ModelProduct,
    ModelRequest,
    Task,
    parse_classify_answer,
    parse_extract_answer,
)
from model_repository.product_vlm import prompts
from model_repository.product_vlm.prompts import IMAGE_PLACEHOLDER, PromptSet
from training.sft.collate import (
    END_OF_TURN,
    IGNORE_INDEX,
    ExampleTooLong,
    chat_text,
    encode_example,
    expand_image_tokens,
    pad_batch,
)
from training.sft.export import SftExportError, export_sft

JOGGERS = "gid://shopify/TaxonomyCategory/aa-1-1-1-1"
JOGGERS_PATH = "Apparel & Accessories > Clothing > Activewear > Activewear Pants > Joggers"
NO_ATTRIBUTES = "gid://shopify/TaxonomyCategory/ap"


def _row(**overrides: Any) -> dict[str, Any]:
    row = {
        "product_id": "p1",
        "store": "s1",
        "content_hash": "h1",
        "title": "Trail  Joggers",
        "description": "<p>Soft <b>cotton</b> joggers &amp; a drawstring.</p><script>x()</script>",
        "product_type": "Pants",
        "vendor": "Acme",
        "tags": ["running", "black"],
        "image_urls": ["https://cdn.example.com/j.jpg"],
        "category_id": JOGGERS,
        "category_full_name": JOGGERS_PATH,
        "attributes": json.dumps({"color": ["black", "Blue"], "activity": ["Running"], "bogus": ["x"]}),
        "split": "train",
    }
    row.update(overrides)
    return row


def _write(path: Path, rows: list[dict[str, Any]], drop: tuple[str, ...] = ()) -> Path:
    columns = {k: [r.get(k) for r in rows] for k in _row() if k not in drop}
    schema = pa.schema(
        [(k, pa.list_(pa.string()) if k in ("tags", "image_urls") else pa.string()) for k in _row() if k not in drop]
    )
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


def _records(directory: Path, split: str = "train") -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def prompt_set() -> PromptSet:
    return PromptSet.load()


def _expected_product() -> ModelProduct:
    # Built by hand from the row (not through the export's code path): what the pipeline
    # sends for this product, with the description as plain text.
    return ModelProduct(
        title="Trail Joggers",
        description="Soft cotton joggers & a drawstring.",
        product_type="Pants",
        vendor="Acme",
        tags=("running", "black"),
    )


def test_classify_prompt_is_the_served_prompt(tmp_path, sample_taxonomy, prompt_set):
    out = tmp_path / "out"
    export_sft(_write(tmp_path / "d.parquet", [_row()]), out, sample_taxonomy)
    record = next(r for r in _records(out) if r["task"] == "classify")
    request = ModelRequest(task=Task.CLASSIFY, product=_expected_product())
    assert record["prompt"] == prompt_set.render(request, has_image=True)
    assert IMAGE_PLACEHOLDER in record["prompt"]
    assert record["images"] == ["https://cdn.example.com/j.jpg"]
    assert record["completion"].endswith(END_OF_TURN)
    answer = parse_classify_answer(record["completion"].removesuffix(END_OF_TURN))
    assert answer.category == JOGGERS_PATH and answer.confidence == 1.0
    assert json.loads(record["completion"].removesuffix(END_OF_TURN)) == {
        "category": JOGGERS_PATH,
        "confidence": 1.0,
        "simplified_description": "",
        "image_description": "",
    }


def test_extract_prompt_is_the_served_prompt(tmp_path, sample_taxonomy, prompt_set):
    out = tmp_path / "out"
    result = export_sft(_write(tmp_path / "d.parquet", [_row()]), out, sample_taxonomy)
    record = next(r for r in _records(out) if r["task"] == "extract")
    category = sample_taxonomy.get(JOGGERS)
    request = ModelRequest(
        task=Task.EXTRACT,
        product=_expected_product(),
        category=ModelCategory(id=JOGGERS, full_name=JOGGERS_PATH),
        attributes=tuple(
            ModelAttribute(handle=a.handle, name=a.name, values=tuple(v.name for v in a.values))
            for a in sample_taxonomy.attributes_of(category)
        ),
    )
    assert record["prompt"] == prompt_set.render(request, has_image=True)
    # Allowed values only, in the taxonomy's spelling and order; the rest counted.
    text = record["completion"].removesuffix(END_OF_TURN)
    assert json.loads(text) == {"attributes": {"activity": ["Running"], "color": ["Black", "Blue"]}}
    assert parse_extract_answer(text).attributes == {"activity": ["Running"], "color": ["Black", "Blue"]}
    assert result.manifest["counts"]["notes"]["attribute_handle_not_in_category"] == 1


def test_messages_say_what_prompt_and_completion_say(tmp_path, sample_taxonomy):
    out = tmp_path / "out"
    export_sft(_write(tmp_path / "d.parquet", [_row(), _row(product_id="p2", image_urls=[])]), out, sample_taxonomy)
    records = _records(out)
    assert len(records) == 4
    for record in records:
        assert chat_text(record["messages"], IMAGE_PLACEHOLDER) == record["prompt"] + record["completion"] + "\n"
        images = sum(p.get("type") == "image" for p in record["messages"][1]["content"])
        assert images == len(record["images"])
    text_only = [r for r in records if r["product_id"] == "p2"]
    assert all(IMAGE_PLACEHOLDER not in r["prompt"] and r["images"] == [] for r in text_only)


def test_manifest_names_prompt_set_taxonomy_counts_and_source(tmp_path, sample_taxonomy, prompt_set):
    rows = [_row(), _row(product_id="p2", split="validation"), _row(product_id="p3", category_id=NO_ATTRIBUTES)]
    data = _write(tmp_path / "d.parquet", rows)
    out = tmp_path / "out"
    export_sft(data, out, sample_taxonomy)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_version"] == prompt_set.model_version == "qwen2.5-vl-7b-productlens-1"
    assert manifest["prompt_set"]["fingerprint"] == prompt_set.fingerprint
    assert manifest["prompt_set"]["classify_mode"] == "fine_tuned"
    assert manifest["taxonomy_version"] == "2024-07"
    assert manifest["source"] == {
        "path": str(data),
        "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "rows": 3,
    }
    assert manifest["counts"]["rows"] == 3 and manifest["counts"]["rows_skipped"] == 0
    # p3's category has no attributes: classify only (the pipeline makes no extract call).
    assert manifest["counts"]["examples_by_task"] == {"classify": 3, "extract": 2}
    assert manifest["counts"]["notes"]["extract_category_without_attributes"] == 1
    assert manifest["files"]["train"]["examples"] == {"classify": 2, "extract": 1}
    assert manifest["files"]["validation"]["examples"] == {"classify": 1, "extract": 1}
    for entry in manifest["files"].values():
        assert entry["sha256"] == hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest()


def test_bad_rows_are_counted_not_fatal(tmp_path, sample_taxonomy):
    rows = [
        _row(),
        _row(product_id="no-title", title=None),
        _row(product_id="unknown", category_id="gid://shopify/TaxonomyCategory/zz-9", category_full_name="Nope"),
        _row(product_id="uncategorised", category_id=None, category_full_name=None),
        _row(product_id="bad-json", attributes="{not json"),
        _row(product_id="not-object", attributes="[1, 2]"),
        _row(product_id="unlabelled", attributes=None),
        _row(product_id="empty", attributes="{}"),
        _row(product_id="by-name", category_id=None),
    ]
    out = tmp_path / "out"
    result = export_sft(_write(tmp_path / "d.parquet", rows), out, sample_taxonomy)
    skipped = result.manifest["skipped"]
    assert skipped["invalid_product"] == {"rows": 1, "product_ids": ["no-title"]}
    assert skipped["unknown_category"]["product_ids"] == ["unknown"]
    assert skipped["no_category"]["product_ids"] == ["uncategorised"]
    assert skipped["JSONDecodeError"]["product_ids"] == ["bad-json"]
    assert skipped["malformed_attributes"]["product_ids"] == ["not-object"]
    assert result.manifest["counts"]["rows_skipped"] == 5
    # Unlabelled attributes: classify is still trained, extract is not taught to say nothing.
    assert result.manifest["counts"]["notes"]["extract_without_labels"] == 2
    ids = {(r["product_id"], r["task"]) for r in _records(out)}
    assert ids == {
        ("p1", "classify"),
        ("p1", "extract"),
        ("unlabelled", "classify"),
        ("empty", "classify"),
        ("by-name", "classify"),
        ("by-name", "extract"),
    }


def test_missing_optional_columns_and_empty_input(tmp_path, sample_taxonomy):
    drop = ("store", "content_hash", "description", "product_type", "vendor", "tags", "image_urls", "split")
    out = tmp_path / "out"
    result = export_sft(_write(tmp_path / "d.parquet", [_row()], drop=drop), out, sample_taxonomy)
    assert result.manifest["counts"]["examples_by_task"] == {"classify": 1, "extract": 1}
    assert all(r["images"] == [] and r["split"] == "train" for r in _records(out))

    empty = export_sft(_write(tmp_path / "e.parquet", []), tmp_path / "empty", sample_taxonomy)
    assert empty.manifest["counts"]["rows"] == 0 and empty.manifest["files"] == {}


def test_tasks_and_image_modes(tmp_path, sample_taxonomy):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"jpeg")
    (tmp_path / "secret.jpg").write_bytes(b"jpeg")
    rows = [
        _row(image_urls=["a.jpg"]),
        _row(product_id="p2", image_urls=["../secret.jpg"]),
        _row(product_id="p3", image_urls=["https://cdn.example.com/x.jpg"]),
    ]
    data = _write(tmp_path / "d.parquet", rows)
    out = tmp_path / "path"
    result = export_sft(data, out, sample_taxonomy, tasks=["classify"], images="path", image_root=tmp_path / "img")
    images = {r["product_id"]: r["images"] for r in _records(out)}
    # Outside the root or not local: text only, counted (as the pipeline reads local images).
    assert images == {"p1": ["a.jpg"], "p2": [], "p3": []}
    assert result.manifest["counts"]["notes"]["image_not_referenced"] == 2
    assert result.manifest["tasks"] == ["classify"]

    none = export_sft(data, tmp_path / "none", sample_taxonomy, images="none")
    assert all(IMAGE_PLACEHOLDER not in r["prompt"] for r in _records(tmp_path / "none"))
    assert none.manifest["images"]["mode"] == "none"
    with pytest.raises(SftExportError, match="image-root"):
        export_sft(data, tmp_path / "x", sample_taxonomy, images="path")


def test_refuses_other_taxonomy_or_candidate_prompts(tmp_path, sample_taxonomy):
    data = _write(tmp_path / "d.parquet", [_row()])
    directory = tmp_path / "prompts"
    shutil.copytree(prompts.DEFAULT_PROMPTS_DIR, directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**manifest, "taxonomy_version": "2025-01"}))
    with pytest.raises(SftExportError, match="one taxonomy version"):
        export_sft(data, tmp_path / "o", sample_taxonomy, prompts_dir=directory)
    (directory / "manifest.json").write_text(json.dumps({**manifest, "classify_mode": "candidates"}))
    with pytest.raises(SftExportError, match="fine_tuned"):
        export_sft(data, tmp_path / "o", sample_taxonomy, prompts_dir=directory)
    with pytest.raises(SftExportError, match="not a readable Parquet"):
        export_sft(directory / "manifest.json", tmp_path / "o", sample_taxonomy)


# -- collation ---------------------------------------------------------------------------

_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"]


def _tokenizer(texts: list[str]) -> Tokenizer:
    """A tiny WordLevel tokenizer over the texts' words, with Qwen's markers as single tokens."""
    pre = Split(pattern=Regex(r"\s+|[^\w\s]"), behavior="isolated")
    words: dict[str, int] = {"[PAD]": 0, "[UNK]": 1}
    for special in _SPECIALS:
        words[special] = len(words)
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(text):
            words.setdefault(piece, len(words))
    tokenizer = Tokenizer(WordLevel(words, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre
    tokenizer.add_special_tokens(_SPECIALS)
    return tokenizer


def test_labels_train_only_the_answer_and_end_token(tmp_path, sample_taxonomy):
    out = tmp_path / "out"
    export_sft(_write(tmp_path / "d.parquet", [_row()]), out, sample_taxonomy)
    records = _records(out)
    tok = _tokenizer([r["prompt"] + r["completion"] for r in records])

    def encode(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False).ids

    pad_id = tok.token_to_id("<|image_pad|>")
    for record in records:
        ex = encode_example(record, encode, image_pad_id=pad_id, image_token_counts=[4])
        prompt_len = len(encode(record["prompt"])) + 3  # one placeholder became four
        assert ex.labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
        assert ex.input_ids.count(pad_id) == 4
        trained = [t for t in ex.labels if t != IGNORE_INDEX]
        assert trained == ex.input_ids[prompt_len:] == encode(record["completion"])
        assert trained[-1] == tok.token_to_id(END_OF_TURN)
        assert tok.decode(trained, skip_special_tokens=False).replace(" ", "") == record["completion"].replace(" ", "")

    a, b = (encode_example(r, encode, image_pad_id=pad_id, image_token_counts=[2]) for r in records)
    batch = pad_batch([a, b], pad_id=0)
    width = max(len(a.input_ids), len(b.input_ids))
    assert all(len(row) == width for key in batch for row in batch[key])
    short = min((a, b), key=lambda e: len(e.input_ids))
    i = [a, b].index(short)
    assert batch["labels"][i][len(short.input_ids) :] == [IGNORE_INDEX] * (width - len(short.input_ids))
    assert batch["attention_mask"][i].count(1) == len(short.input_ids)

    with pytest.raises(ExampleTooLong):
        encode_example(records[0], encode, max_length=10)


def test_image_expansion_checks_counts():
    assert expand_image_tokens([1, 9, 2], 9, [3]) == [1, 9, 9, 9, 2]
    with pytest.raises(ValueError, match="placeholder"):
        expand_image_tokens([1, 2], 9, [3])
    with pytest.raises(ValueError, match="more image placeholders"):
        expand_image_tokens([9, 9], 9, [3])


@pytest.mark.parametrize("command", [("sft", "export"), ("dataset", "export-sft")])
def test_cli_sft_export(tmp_path, command):
    from typer.testing import CliRunner

    from pipelines.cli import app
    from taxonomy.loader import SAMPLE_TAXONOMY_DIR

    data = _write(tmp_path / "d.parquet", [_row(), _row(product_id="bad", title=None)])
    args = [
        *command,
        "--data",
        str(data),
        "--output",
        str(tmp_path / "o"),
        "--taxonomy",
        str(SAMPLE_TAXONOMY_DIR),
    ]
    result = CliRunner().invoke(app, [*args, "--tasks", "classify"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["counts"]["examples"] == 1
    result = CliRunner().invoke(app, [*args, "--tasks", "classify,describe"])
    assert result.exit_code == 2
