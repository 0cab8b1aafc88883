"""Merchant feedback and the review queue (issue 15).

Merchant feedback (accept, correct, delete) is never fed straight into training: it is
stored, routed by a vetting policy (data, `policy.yaml`), given a second model opinion,
and vetted by people where the policy says so; only vetted labels are exported as
training data. A package of its own inside `service/` because the real-time service
takes the feedback and serves the review app, but the store, the policy and the export
are also used offline (`productlens labels export`, `productlens review add-user`).

| module | owns |
|---|---|
| `models` | the ORM tables (created and changed only by the Alembic migrations) |
| `migrations` | Alembic environment and versions; `store.ReviewStore` upgrades to head at start |
| `store` | `ReviewStore`: transactions, idempotency, the queue, decisions, accounts, ratings; returns plain views |
| `feedback` | `FeedbackIn` (the API body), validation against the taxonomy, `ServedRecord`, `process_feedback` |
| `policy` | `VettingPolicy` (`policy.yaml`) and `route`: who must look at a feedback event and why |
| `second_opinion` | the model's opinion of a merchant's correction (CPU baseline, or the served candidates) |
| `stats` | dashboard figures: acceptance, correction and rejection rates with Wilson intervals; Cohen's kappa |
| `labels` | vetted labels -> golden-shaped JSONL for `productlens dataset build` |

Nothing here imports Beam, FastAPI or the model at import time.
"""
