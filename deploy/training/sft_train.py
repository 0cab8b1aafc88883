"""Supervised LoRA fine-tuning of a Qwen2.5-VL-class model on `productlens sft export` output.

    torchrun --nproc_per_node 4 deploy/training/sft_train.py \\
        --data /data/sft --model /models/Qwen2.5-VL-7B-Instruct --output-dir /checkpoints/run1

The data side is the repository's, so training sees what serving sees:

- prompts are the export's `prompt` field, rendered by product_vlm's prompt set; they are
  tokenized as they are (no chat template here: vLLM applies none at serving either), and the
  answer is tokenized separately and appended (`training/sft/collate.py` says why);
- labels are -100 everywhere but the answer and its `<|im_end|>` (`encode_example`);
- images go through the pipeline's own fetch and preparation (`transforms.core.images`:
  the address policy, 448 px a side, JPEG), then the model's image processor, and each
  `<|image_pad|>` is expanded to that image's patch tokens, as vLLM does.

Options: `--resume auto` continues from the newest checkpoint in the output directory (spot
instances get preempted), `--wandb PROJECT` logs to Weights & Biases, `--hub-repo ID` pushes
checkpoints and the final adapter to the Hugging Face Hub. torch, transformers, trl and peft
are imported inside functions: this file is linted in CI, where they are not installed.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import io
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without `pip install -e .`

from training.sft.collate import ExampleTooLong, encode_example, pad_batch  # noqa: E402

if TYPE_CHECKING:
    import torch

log = logging.getLogger("sft_train")

# The language model's projections: LoRA on these only. The vision tower stays frozen (its
# modules are under `visual`; Qwen2.5-VL's vision MLP has gate/up/down_proj too, hence the
# exclusion rather than a bare list of names).
LORA_TARGETS = r"^(?!.*visual).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
IMAGE_PAD = "<|image_pad|>"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="directory of `productlens sft export` output")
    p.add_argument("--model", required=True, help="base checkpoint: a local directory or a Hub id")
    p.add_argument("--output-dir", type=Path, required=True, help="checkpoints, the final adapter, the summary")
    p.add_argument("--train-split", default="train")
    p.add_argument("--eval-split", default="validation", help="evaluated when <split>.jsonl exists")
    p.add_argument("--image-root", type=Path, help="for --images path exports: overrides the manifest's root")
    p.add_argument("--image-cache", type=Path, help="prepared JPEGs (default: <output-dir>/image-cache)")
    p.add_argument(
        "--max-length", type=int, default=8192, help="longer examples are skipped (vlm_engine max_model_len)"
    )
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps (smoke runs)")
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--per-device-batch", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=4)
    p.add_argument("--warmup-ratio", type=float, default=0.03)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--save-steps", type=int, default=200)
    p.add_argument("--eval-steps", type=int, default=200)
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    p.add_argument("--no-gradient-checkpointing", action="store_true")
    p.add_argument("--resume", default="auto", help="auto (newest checkpoint in --output-dir, if any), none, or a path")
    p.add_argument("--wandb", metavar="PROJECT", help="log to this Weights & Biases project (WANDB_API_KEY set)")
    p.add_argument("--run-name", help="the W&B run name (default: the output directory's name)")
    p.add_argument("--hub-repo", metavar="ID", help="push checkpoints and the adapter to this Hub repo (HF_TOKEN set)")
    p.add_argument("--hub-private", action="store_true")
    p.add_argument("--image-workers", type=int, default=16)
    return p.parse_args(argv)


def read_export(data: Path, split: str) -> list[dict[str, Any]]:
    path = data / f"{split}.jsonl"
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def prepare_images(
    records: Sequence[dict[str, Any]], image_root: Path | None, cache: Path, workers: int
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Every referenced image fetched and prepared once, as the pipeline prepares it, into
    `cache` (keyed by the reference, so a resumed run or a second rank reads it back). A
    record whose image fails is dropped, not trained text-only: its prompt has the image slot."""
    from model_repository.contract import Task  # noqa: F401 - the repository must be importable
    from transforms.config import ImageConfig
    from transforms.core.images import ImageError, fetch_image, prepare_image

    config = ImageConfig()
    cache.mkdir(parents=True, exist_ok=True)
    base_dir = str(image_root) if image_root is not None else None

    def one(ref: str) -> str | None:
        target = cache / (hashlib.sha256(ref.encode()).hexdigest()[:32] + ".jpg")
        if target.is_file():
            return str(target)
        try:
            jpeg = prepare_image(fetch_image(ref, config, base_dir), config, ref)
        except ImageError as exc:
            log.warning("image %s skipped: %s", ref[:200], exc)
            return None
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(jpeg)
        tmp.replace(target)
        return str(target)

    refs = sorted({ref for r in records for ref in r["images"]})
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        prepared = dict(zip(refs, pool.map(one, refs)))
    kept: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    for record in records:
        files = [prepared.get(ref) for ref in record["images"]]
        if any(f is None for f in files):
            counts["image_failed"] += 1
            continue
        kept.append({**record, "image_files": files})
    return kept, counts


class Collator:
    """Export records -> a model batch: ids and masked labels from `training.sft.collate`,
    pixel values and grid sizes from the model's image processor."""

    def __init__(self, tokenizer: Any, image_processor: Any, max_length: int, token_types: bool = False) -> None:
        self.tokenizer = tokenizer
        # transformers v5 wants `mm_token_type_ids` (1 on image tokens) for M-RoPE; older
        # versions' forward does not take it.
        self.token_types = token_types
        self.image_processor = image_processor
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.image_pad_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        self.merge = int(getattr(image_processor, "merge_size", 2))
        self.skipped = Counter[str]()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def __call__(self, records: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch
        from PIL import Image

        examples, images, grids = [], [], []
        for record in records:
            pixels = [
                Image.open(io.BytesIO(Path(f).read_bytes())).convert("RGB") for f in record.get("image_files", [])
            ]
            counts: list[int] = []
            if pixels:
                out = self.image_processor(images=pixels, return_tensors="pt")
                counts = [int(g.prod()) // self.merge**2 for g in out["image_grid_thw"]]
            try:
                example = encode_example(
                    record,
                    self.encode,
                    max_length=self.max_length,
                    image_pad_id=self.image_pad_id,
                    image_token_counts=counts,
                )
            except ExampleTooLong:
                self.skipped["too_long"] += 1  # filtered before training; kept as a guard
                continue
            examples.append(example)
            if pixels:
                images.append(out["pixel_values"])
                grids.append(out["image_grid_thw"])
        if not examples:
            raise ValueError("every example of the batch is over --max-length")
        batch: dict[str, Any] = {k: torch.tensor(v) for k, v in pad_batch(examples, self.pad_id).items()}
        if images:
            batch["pixel_values"] = torch.cat(images)
            batch["image_grid_thw"] = torch.cat(grids)
        if self.token_types:
            batch["mm_token_type_ids"] = (batch["input_ids"] == self.image_pad_id).long()
        return batch


def drop_too_long(records: list[dict[str, Any]], collator: Collator) -> tuple[list[dict[str, Any]], int]:
    """Examples over --max-length, found before training (text plus image tokens: the image
    count comes from the prepared 448 px JPEG's grid), so no batch is ever cut short."""
    kept = []
    for record in records:
        try:
            collator([record])
        except ValueError:
            continue
        kept.append(record)
    return kept, len(records) - len(kept)


def load_model(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    import torch
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    auto = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    model = auto.from_pretrained(args.model, torch_dtype=dtype, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    image_processor = AutoImageProcessor.from_pretrained(args.model)
    if tokenizer.convert_tokens_to_ids(IMAGE_PAD) in (None, tokenizer.unk_token_id):
        raise SystemExit(f"{args.model}: the tokenizer has no {IMAGE_PAD} token: not a Qwen2-VL-class checkpoint")
    return model, tokenizer, image_processor


def add_lora(model: Any, args: argparse.Namespace) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
    )
    if not args.no_gradient_checkpointing:
        model.enable_input_require_grads()  # checkpointed layers need a grad path through frozen embeddings
    model = get_peft_model(model, config)
    model.print_trainable_parameters()
    return model


def warmup_kwargs(config_class: type, ratio: float) -> dict[str, float]:
    """The warmup share in the spelling of the installed transformers: `warmup_ratio` until
    v5, which dropped it and reads a `warmup_steps` below 1 as a ratio."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_class)}
    return {"warmup_ratio": ratio} if "warmup_ratio" in names else {"warmup_steps": ratio}


def resume_checkpoint(args: argparse.Namespace) -> str | None:
    if args.resume == "none":
        return None
    if args.resume != "auto":
        return args.resume
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(args.output_dir)) if args.output_dir.is_dir() else None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    manifest = json.loads((args.data / "manifest.json").read_text())
    if manifest.get("format") != "productlens-sft/1":
        raise SystemExit(f"{args.data}: not a productlens sft export (format {manifest.get('format')!r})")

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if args.wandb:
        os.environ.setdefault("WANDB_PROJECT", args.wandb)
    evaluate = (args.data / f"{args.eval_split}.jsonl").is_file() and (
        args.data / f"{args.eval_split}.jsonl"
    ).stat().st_size
    config = SFTConfig(
        output_dir=str(args.output_dir),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.per_device_batch,
        per_device_eval_batch_size=args.per_device_batch,
        gradient_accumulation_steps=args.grad_accum,
        **warmup_kwargs(SFTConfig, args.warmup_ratio),
        lr_scheduler_type="cosine",
        bf16=args.dtype == "bfloat16",
        gradient_checkpointing=not args.no_gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=args.logging_steps,
        save_strategy="steps",
        eval_strategy="steps" if evaluate else "no",
        eval_steps=args.eval_steps,
        save_steps=args.save_steps,
        save_total_limit=3,
        seed=args.seed,
        report_to=["wandb"] if args.wandb else "none",
        run_name=args.run_name or args.output_dir.name,
        push_to_hub=bool(args.hub_repo),
        hub_model_id=args.hub_repo,
        hub_private_repo=args.hub_private,
        hub_strategy="checkpoint",  # the newest checkpoint on the Hub too: a new machine can resume from it
        remove_unused_columns=False,  # the collator reads the export's fields
        dataset_kwargs={"skip_prepare_dataset": True},  # tokenization is training.sft.collate's
        ddp_find_unused_parameters=False,
        dataloader_num_workers=2,
    )

    model, tokenizer, image_processor = load_model(args)
    token_types = "mm_token_type_ids" in inspect.signature(model.forward).parameters
    collator = Collator(tokenizer, image_processor, args.max_length, token_types)
    image_root = args.image_root or (Path(manifest["images"]["root"]) if manifest["images"].get("root") else None)
    cache = args.image_cache or args.output_dir / "image-cache"
    summary: dict[str, Any] = {"export": manifest, "base_model": args.model, "skipped": {}}
    splits: dict[str, Any] = {}
    for name in (args.train_split, args.eval_split):
        if not (args.data / f"{name}.jsonl").is_file():
            continue
        # One rank fetches and prepares the images; the others then read the cache.
        with config.main_process_first(desc=f"prepare {name}"):
            records, skipped = prepare_images(read_export(args.data, name), image_root, cache, args.image_workers)
        records, too_long = drop_too_long(records, collator)
        collator.skipped.clear()
        summary["skipped"][name] = {**skipped, "too_long": too_long}
        summary.setdefault("examples", {})[name] = len(records)
        fields = ("id", "task", "prompt", "completion", "image_files")
        splits[name] = Dataset.from_list([{k: r.get(k, []) for k in fields} for r in records])
    if args.train_split not in splits or len(splits[args.train_split]) == 0:
        raise SystemExit(f"{args.data}: no trainable examples in {args.train_split}.jsonl")
    eval_set = splits.get(args.eval_split) if evaluate else None
    if eval_set is not None and len(eval_set) == 0:
        raise SystemExit(f"{args.data}: every {args.eval_split} example was skipped ({summary['skipped']})")
    log.info("examples %s, skipped %s", summary.get("examples"), summary["skipped"])

    model = add_lora(model, args)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=splits[args.train_split],
        eval_dataset=eval_set,
        data_collator=collator,
        processing_class=tokenizer,
    )
    result = trainer.train(resume_from_checkpoint=resume_checkpoint(args))
    summary["train"] = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    if eval_set is not None:
        summary["eval"] = trainer.evaluate()

    final = args.output_dir / "adapter"
    trainer.save_model(str(final))  # the LoRA adapter (merge_lora.py turns it into served weights)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(final)
        image_processor.save_pretrained(final)
        # The prompt set the adapter learnt travels with it: the new model version ships it.
        (final / "sft_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (args.output_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        if args.hub_repo:
            trainer.push_to_hub(commit_message="final adapter")
    return summary


if __name__ == "__main__":
    main()
