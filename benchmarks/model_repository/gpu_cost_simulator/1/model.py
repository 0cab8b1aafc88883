"""GPU-COST SIMULATOR for benchmarks/saturation.py. Not a model: it sleeps.

Each execute() sleeps a + b*n seconds for a batch of n requests, then answers the
contract with a fixed, valid classify answer and an empty extract answer. With one
instance, at most one batch is "on the GPU" at a time, so capacity is
max_batch / (a + b*max_batch) requests/s. Busy time is what Triton reports as
compute_infer duration for this model.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.a = float(params["batch_fixed_s"])
        self.b = float(params["per_item_s"])
        self.classify = json.dumps(
            {
                "category": params["category"],
                "confidence": 0.9,
                "simplified_description": "simulated",
                "image_description": "simulated",
            }
        ).encode()
        self.extract = json.dumps({"attributes": {}}).encode()

    def execute(self, requests: list[Any]) -> list[Any]:
        batches = [pb_utils.get_input_tensor_by_name(r, "REQUEST").as_numpy().reshape(-1) for r in requests]
        n = sum(len(b) for b in batches)
        time.sleep(self.a + self.b * n)
        responses = []
        for batch in batches:
            out = np.empty((len(batch), 1), dtype=np.object_)
            for i, raw in enumerate(batch):
                out[i, 0] = self.extract if b'"task":"extract"' in bytes(raw) else self.classify
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("RESPONSE", out)]))
        return responses
