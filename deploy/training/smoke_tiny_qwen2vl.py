"""One SFT step on a tiny, randomly initialised Qwen2-VL model: the recipe end to end with
nothing downloaded (not run in CI; torch, transformers, trl and peft from requirements.txt).

    python deploy/training/smoke_tiny_qwen2vl.py [--work DIR] [--dtype float32|bfloat16]

It writes a small training set (products of the bundled sample taxonomy, with a generated
image each), exports it with `training.sft.export` (the served prompt set), builds a word-level
tokenizer over those texts with Qwen's chat and vision tokens, a Qwen2-VL image processor and a
two-layer Qwen2-VL config, saves them as a checkpoint directory, and runs sft_train.py on it for
one optimizer step with LoRA. What it checks: the export, the image preparation, the collation
with expanded image tokens and masked labels, the model's forward and backward through
LoRA, checkpoint writing, and the final adapter. Quality is not its question. It also runs
on CPU in a few seconds (float32); README.md has its output.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def write_dataset(work: Path) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    products = [
        ("Trail Joggers", "aa-1-1-1-1", {"color": ["Black"], "activity": ["Running"]}, (20, 20, 20)),
        ("Summer Dress", "aa-1-4", {"color": ["Red"]}, (200, 30, 30)),
        ("Baseball Cap", "aa-2-17-1", {"color": ["Blue"]}, (30, 30, 200)),
        ("Denim Jacket", "aa-1-10-2", {"color": ["Blue"]}, (60, 80, 160)),
    ]
    for i, (title, cid, attrs, rgb) in enumerate(products):
        Image.new("RGB", (112, 112), rgb).save(images / f"{i}.png")  # 112 px: 16 image tokens
        rows.append(
            {
                "product_id": f"p{i}",
                "store": "smoke",
                "title": title,
                "description": f"A {title.lower()} for the smoke test.",
                "tags": ["smoke"],
                "image_urls": [f"{i}.png"],
                "category_id": f"gid://shopify/TaxonomyCategory/{cid}",
                "attributes": json.dumps(attrs),
                "split": "train",
            }
        )
    data = work / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    return data, images


def build_checkpoint(export: Path, model_dir: Path, dtype: str) -> None:
    import torch
    from tokenizers import Regex, Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Split
    from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    pre = Split(pattern=Regex(r"\s+|[^\w\s]"), behavior="isolated")
    vocab: dict[str, int] = {"[UNK]": 0}
    for special in QWEN_SPECIALS:
        vocab[special] = len(vocab)
    for line in (export / "train.jsonl").read_text().splitlines():
        record = json.loads(line)
        for piece, _ in pre.pre_tokenize_str(record["prompt"] + record["completion"]):
            vocab.setdefault(piece, len(vocab))
    core = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre
    core.add_special_tokens(QWEN_SPECIALS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="<|endoftext|>", eos_token="<|im_end|>"
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    # The serving cap of vlm_engine/1/model.json's mm_processor_kwargs.
    image_processor = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=200704)
    hidden, heads = 64, 4
    config = Qwen2VLConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        rope_scaling={"type": "mrope", "mrope_section": [4, 2, 2]},  # sums to head_dim / 2 = 8
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": hidden,  # the merger's output feeds the language model
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        torch_dtype=dtype,
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    image_processor.save_pretrained(model_dir)
    print(f"tiny Qwen2-VL: {sum(p.numel() for p in model.parameters()):,} parameters, vocabulary {len(tokenizer)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sft-smoke-"))

    from taxonomy.loader import SAMPLE_TAXONOMY_DIR, load_taxonomy
    from training.sft.export import export_sft

    data, images = write_dataset(work)
    result = export_sft(data, work / "export", load_taxonomy(SAMPLE_TAXONOMY_DIR), images="path", image_root=images)
    print("export:", json.dumps(result.manifest["counts"]))
    build_checkpoint(work / "export", work / "tiny-model", args.dtype)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import sft_train

    summary = sft_train.main(
        [
            "--data",
            str(work / "export"),
            "--model",
            str(work / "tiny-model"),
            "--output-dir",
            str(work / "run"),
            "--max-steps",
            "1",
            "--per-device-batch",
            "2",
            "--grad-accum",
            "1",
            "--save-steps",
            "1",
            "--dtype",
            args.dtype,
            "--image-workers",
            "2",
        ]
    )
    adapter = work / "run" / "adapter"
    assert (adapter / "adapter_config.json").is_file(), "no adapter was written"
    assert (work / "run" / "checkpoint-1").is_dir(), "no checkpoint was written"
    print("smoke summary:", json.dumps({k: summary.get(k) for k in ("examples", "skipped", "train")}, default=str))
    print(f"OK: one SFT step; adapter at {adapter}")


if __name__ == "__main__":
    main()
