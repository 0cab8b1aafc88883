"""Shared fixtures. Tests that read ../shared skip with a stated reason where it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SHARED_TAXONOMY = SHARED / "taxonomy" / "shopify-2024-07"
SHARED_DATASETS = SHARED / "datasets" / "dev"
EXAMPLES = ROOT / "examples"

needs_shared_taxonomy = pytest.mark.skipif(
    not (SHARED_TAXONOMY / "categories.json").is_file(),
    reason=f"the full 2024-07 taxonomy is not at {SHARED_TAXONOMY} (../shared is absent)",
)


@pytest.fixture(scope="session")
def sample_taxonomy():
    from taxonomy.loader import SAMPLE_TAXONOMY_DIR, load_taxonomy

    # The 840-category excerpt: fast, and what these tests' expectations were written for.
    return load_taxonomy(SAMPLE_TAXONOMY_DIR)


@pytest.fixture(scope="session")
def full_taxonomy():
    if not (SHARED_TAXONOMY / "categories.json").is_file():
        pytest.skip(f"the full 2024-07 taxonomy is not at {SHARED_TAXONOMY} (../shared is absent)")
    from taxonomy.loader import load_taxonomy

    return load_taxonomy(SHARED_TAXONOMY)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the suite's taxonomy/index caches out of the user's home, but share them
    across the session so the category index is built once."""
    import os

    os.environ.setdefault("PRODUCTLENS_CACHE", str(tmp_path_factory.mktemp("productlens-cache")))
