"""Chat JSONL records -> input ids and labels, without torch (the GPU recipe wraps these lists
in tensors; CPU tests cover the logic).

Why the prompt and the answer are tokenized separately rather than as one text: at serving,
vLLM tokenizes the rendered prompt alone (`text_input`, no chat template) and the model
continues from its last token. Training on `tokenize(prompt) + tokenize(answer)` is exactly
that sequence; tokenizing the joined text could merge tokens across the boundary and teach
the model a split it never sees when served.

Labels are -100 (ignored by the loss) on the whole prompt (system turn, user turn, image
tokens, the open assistant header) and on padding; only the answer and its end token
(`<|im_end|>`, where generation stops) are trained.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "END_OF_TURN",
    "IGNORE_INDEX",
    "EncodedExample",
    "ExampleTooLong",
    "chat_text",
    "encode_example",
    "expand_image_tokens",
    "pad_batch",
]

IGNORE_INDEX = -100  # the label PyTorch's cross-entropy ignores
END_OF_TURN = "<|im_end|>"  # Qwen's end of a turn: the stop token at serving

Encode = Callable[[str], list[int]]


class ExampleTooLong(ValueError):
    """The example does not fit `max_length`. It is skipped, never truncated: cutting the
    prompt would drop image tokens or product text the answer depends on, and cutting the
    answer would teach the model to stop mid-JSON."""


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError("input_ids and labels must have the same length")


def expand_image_tokens(ids: Sequence[int], image_pad_id: int, counts: Sequence[int]) -> list[int]:
    """The prompt's ids with the i-th image placeholder token repeated counts[i] times: the
    processor's expansion of `<|image_pad|>` into the image's patch tokens (256 for the
    pipeline's 448x448 JPEGs), which vLLM does at serving."""
    out: list[int] = []
    seen = 0
    for token in ids:
        if token == image_pad_id:
            if seen >= len(counts):
                raise ValueError(f"the prompt has more image placeholders than the {len(counts)} image(s) given")
            if counts[seen] < 1:
                raise ValueError(f"image {seen} has {counts[seen]} tokens; at least 1 expected")
            out.extend([image_pad_id] * counts[seen])
            seen += 1
        else:
            out.append(token)
    if seen != len(counts):
        raise ValueError(f"the prompt has {seen} image placeholder(s) but {len(counts)} image(s) were given")
    return out


def encode_example(
    record: Mapping[str, Any],
    encode: Encode,
    *,
    max_length: int | None = None,
    image_pad_id: int | None = None,
    image_token_counts: Sequence[int] = (),
) -> EncodedExample:
    """One exported record -> ids and labels. `encode` is any text -> ids callable that adds
    no special tokens of its own (a Hugging Face tokenizer's `encode(text,
    add_special_tokens=False)`; Qwen's adds none anyway). With `image_pad_id`, placeholders are
    expanded to `image_token_counts`. Raises ExampleTooLong past `max_length`."""
    prompt, completion = record["prompt"], record["completion"]
    if not isinstance(prompt, str) or not isinstance(completion, str) or not completion:
        raise ValueError("a record needs a string prompt and a non-empty string completion")
    prompt_ids = list(encode(prompt))
    if image_pad_id is not None:
        prompt_ids = expand_image_tokens(prompt_ids, image_pad_id, image_token_counts)
    answer_ids = list(encode(completion))
    if not answer_ids:
        raise ValueError("the completion encodes to no tokens")
    total = len(prompt_ids) + len(answer_ids)
    if max_length is not None and total > max_length:
        raise ExampleTooLong(f"{total} tokens, over max_length {max_length}")
    return EncodedExample(
        input_ids=prompt_ids + answer_ids,
        labels=[IGNORE_INDEX] * len(prompt_ids) + answer_ids,
    )


def pad_batch(examples: Sequence[EncodedExample], pad_id: int) -> dict[str, list[list[int]]]:
    """Right-padded `input_ids`, `labels` (padding is IGNORE_INDEX) and `attention_mask`."""
    if not examples:
        raise ValueError("an empty batch")
    width = max(len(e.input_ids) for e in examples)
    batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "attention_mask": []}
    for e in examples:
        pad = width - len(e.input_ids)
        batch["input_ids"].append(e.input_ids + [pad_id] * pad)
        batch["labels"].append(e.labels + [IGNORE_INDEX] * pad)
        batch["attention_mask"].append([1] * len(e.input_ids) + [0] * pad)
    return batch


def chat_text(messages: Sequence[Mapping[str, Any]], image_token: str) -> str:
    """The text Qwen2-VL's chat template makes of `messages` (string or typed-part content,
    `{"type": "image"}` parts as `image_token`), each turn closed by `<|im_end|>\\n`. Used to
    check that an export's `messages` and its raw `prompt` + `completion` say the same thing,
    for trainers that apply the processor's chat template instead of reading `prompt`."""
    parts: list[str] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            body = content
        else:
            body = "".join(image_token if p.get("type") == "image" else p.get("text", "") for p in content)
        parts.append(f"<|im_start|>{message['role']}\n{body}{END_OF_TURN}\n")
    return "".join(parts)
