"""Merge a LoRA adapter from sft_train.py into its base model: the directory vlm_engine serves.

    python deploy/training/merge_lora.py --base /models/Qwen2.5-VL-7B-Instruct \\
        --adapter /checkpoints/run1/adapter --output /models/qwen2.5-vl-7b-productlens-2

vLLM serves merged weights (no adapter at run time: one model, full speed), in the Hugging Face
layout `vlm_engine/README.md` asks for: config.json, *.safetensors, tokenizer files and
preprocessor_config.json. The export manifest the adapter was trained on is copied beside
them, so the weights say which prompt set they learnt. torch, transformers and peft are
imported inside main(): this file is linted in CI, where they are not installed.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the base checkpoint the adapter was trained on")
    p.add_argument("--adapter", type=Path, required=True, help="<output-dir>/adapter of sft_train.py")
    p.add_argument("--output", type=Path, required=True, help="the new model directory (must not exist)")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    args = p.parse_args(argv)
    if args.output.exists():
        raise SystemExit(f"{args.output} exists: a model version is written once, into a new directory")

    import torch
    import transformers
    from peft import PeftModel
    from transformers import AutoImageProcessor, AutoTokenizer

    auto = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    base = auto.from_pretrained(args.base, torch_dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(args.adapter)).merge_and_unload()
    merged.save_pretrained(args.output, safe_serialization=True, max_shard_size="5GB")
    # The tokenizer and image processor saved with the adapter are the base's, unchanged.
    AutoTokenizer.from_pretrained(args.adapter).save_pretrained(args.output)
    AutoImageProcessor.from_pretrained(args.adapter).save_pretrained(args.output)
    try:  # the chat template and processor config, for tools that load an AutoProcessor
        transformers.AutoProcessor.from_pretrained(args.base).save_pretrained(args.output)
    except (OSError, ValueError):
        pass
    manifest = args.adapter / "sft_manifest.json"
    if manifest.is_file():
        shutil.copy(manifest, args.output / "sft_manifest.json")
        version = json.loads(manifest.read_text())["model_version"]
        print(f"trained with the prompt set of {version}: copy that prompt set into the new product_vlm version")
    print(f"merged model written to {args.output}")


if __name__ == "__main__":
    main()
