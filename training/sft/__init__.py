"""Supervised fine-tuning data for the production VLM (issue 13, items 2 and 5).

`export` turns a labelled training set (Parquet from `productlens dataset build`) into chat
JSONL whose prompts are rendered by the serving prompt set itself
(`model_repository/product_vlm/prompts.py`), so what the model is trained on and what it is
served cannot drift. `collate` turns those records into token ids and labels without torch,
so CPU tests cover the label masking that the GPU recipe (`deploy/training/`) relies on.
"""
