"""The GPU model: prompt rendering (`prompts.py`, templates in `1/prompts/`) in a Triton
Python-backend BLS model (`1/model.py`) in front of the vLLM-backend engine
(`model_repository/vlm_engine`). See README.md beside this file."""
