"""Localized category names: loading (both layouts, compressed), lookups, correction,
`taxonomy fetch --locale` and `taxonomy search`.

The fixtures are the 840-category sample with the real Spanish, German and Japanese names
of its categories, cut from the bundled full taxonomy, so every test stays fast.
"""

from __future__ import annotations

import copy
import functools
import gzip
import http.server
import json
import lzma
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from taxonomy.corrector import CategoryCorrector
from taxonomy.fetch import FetchError, fetch_release, locale_url
from taxonomy.loader import DEFAULT_TAXONOMY_DIR, SAMPLE_TAXONOMY_DIR, TaxonomyError, load_taxonomy
from taxonomy.model import Taxonomy

RINGS = "gid://shopify/TaxonomyCategory/aa-6-9"
RINGS_PATH = "Apparel & Accessories > Jewelry > Rings"
ES_RINGS_PATH = "Ropa y accesorios > Joyería > Anillos"
JA_RINGS_PATH = "ファッション・アクセサリー > ジュエリー > 指輪"
LOCALES = ("de", "es", "ja")


def _sample_docs() -> tuple[dict[str, Any], dict[str, Any]]:
    cats = json.loads((SAMPLE_TAXONOMY_DIR / "categories.json").read_text())
    attrs = json.loads((SAMPLE_TAXONOMY_DIR / "attributes.json").read_text())
    return cats, attrs


@functools.cache
def _names(locale: str) -> dict[str, str]:
    """The bundle's names in `locale`, restricted to the sample's categories."""
    doc = json.loads(lzma.decompress((DEFAULT_TAXONOMY_DIR / "localizations" / f"{locale}.json.xz").read_bytes()))
    cats, _ = _sample_docs()
    ids = {c["id"] for v in cats["verticals"] for c in v["categories"]}
    return {e["id"]: e["name"] for e in doc["categories"] if e["id"] in ids}


def _localized_dist(cats: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A dist categories document with every name replaced by its localized one."""
    out = copy.deepcopy(cats)
    for v in out["verticals"]:
        for c in v["categories"]:
            c["name"] = names[c["id"]]
            c["full_name"] = " > ".join([*(names[a["id"]] for a in reversed(c["ancestors"])), names[c["id"]]])
            for ref in (*c["children"], *c["ancestors"]):
                ref["name"] = names[ref["id"]]
    return out


@pytest.fixture(scope="module")
def bundle_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our bundle's layout: compressed dist files plus localizations/<locale>.json[.xz|.gz]."""
    root = tmp_path_factory.mktemp("bundle")
    cats, attrs = _sample_docs()
    (root / "categories.json.xz").write_bytes(lzma.compress(json.dumps(cats).encode()))
    (root / "attributes.json.gz").write_bytes(gzip.compress(json.dumps(attrs).encode()))
    loc = root / "localizations"
    loc.mkdir()
    for locale, suffix in zip(LOCALES, (".json.gz", ".json.xz", ".json")):
        doc = {
            "version": "2024-07",
            "locale": locale,
            "categories": [{"id": k, "name": v} for k, v in _names(locale).items()],
        }
        data = json.dumps(doc, ensure_ascii=False).encode()
        packed = {".json.gz": gzip.compress, ".json.xz": lzma.compress, ".json": lambda b: b}[suffix](data)
        (loc / f"{locale}{suffix}").write_bytes(packed)
    return root


@pytest.fixture(scope="module")
def dist_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An official release: dist/en/{categories,attributes}.json beside dist/<locale>/categories.json."""
    dist = tmp_path_factory.mktemp("release") / "dist"
    cats, attrs = _sample_docs()
    (dist / "en").mkdir(parents=True)
    (dist / "en" / "categories.json").write_text(json.dumps(cats))
    (dist / "en" / "attributes.json").write_text(json.dumps(attrs))
    for locale in LOCALES:
        (dist / locale).mkdir()
        (dist / locale / "categories.json").write_text(json.dumps(_localized_dist(cats, _names(locale))))
    return dist


@pytest.fixture(scope="module")
def taxonomy(bundle_layout: Path) -> Taxonomy:
    return load_taxonomy(bundle_layout, use_cache=False)


@pytest.fixture(scope="module")
def corrector(taxonomy: Taxonomy) -> CategoryCorrector:
    return CategoryCorrector(taxonomy)


# -- loading ---------------------------------------------------------------------------------


def test_both_layouts_load_the_same_localized_names(taxonomy: Taxonomy, dist_layout: Path) -> None:
    assert taxonomy.locales == LOCALES
    official = load_taxonomy(dist_layout / "en", use_cache=False)
    assert official.locales == LOCALES and len(official) == len(taxonomy)
    for locale in LOCALES:
        assert official.localized_names(locale) == taxonomy.localized_names(locale) == _names(locale)
    # The English files alone, away from any locale, load as before.
    assert load_taxonomy(SAMPLE_TAXONOMY_DIR, use_cache=False).locales == ()


def test_localized_lookups(taxonomy: Taxonomy) -> None:
    rings = taxonomy.get(RINGS)
    assert taxonomy.localized_full_name(RINGS, "es") == ES_RINGS_PATH
    assert taxonomy.localized_full_name("aa-6-9", "ja") == JA_RINGS_PATH
    assert taxonomy.localized_full_name(RINGS, "xx") is None and taxonomy.localized_names("xx") == {}
    assert taxonomy.localized_full_name("gid://shopify/TaxonomyCategory/nope", "es") is None
    assert taxonomy.by_full_name(ES_RINGS_PATH) is rings
    assert taxonomy.by_full_name("  ropa y ACCESORIOS >  joyería > anillos ") is rings
    assert taxonomy.by_full_name(JA_RINGS_PATH) is rings
    assert taxonomy.by_full_name(RINGS_PATH) is rings
    assert taxonomy.by_full_name(ES_RINGS_PATH, localized=False) is None
    assert taxonomy.by_leaf_name("Anillos") == [rings] and taxonomy.by_leaf_name("指輪") == [rings]
    assert taxonomy.by_leaf_name("Rings") == [rings]
    assert taxonomy.by_leaf_name("Anillos", localized=False) == []


def test_pickle_keeps_names_and_drops_lazy_indexes(taxonomy: Taxonomy) -> None:
    assert taxonomy.by_full_name(ES_RINGS_PATH) is not None  # builds the lazy indexes
    state = taxonomy.__getstate__()
    assert "_localized_full_index" not in state and "_localized" in state
    back = pickle.loads(pickle.dumps(taxonomy))
    assert back.locales == LOCALES and back.by_full_name(ES_RINGS_PATH).id == RINGS


def test_cache_key_covers_locale_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCTLENS_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "tree"
    src.mkdir()
    for name in ("categories.json", "attributes.json"):
        (src / name).write_bytes((SAMPLE_TAXONOMY_DIR / name).read_bytes())
    assert load_taxonomy(src).locales == ()
    (src / "localizations").mkdir()
    doc = {"version": "2024-07", "locale": "es", "categories": [{"id": RINGS, "name": "Anillos"}]}
    (src / "localizations" / "es.json").write_text(json.dumps(doc))
    t = load_taxonomy(src)  # a new locale file is a new cache entry, not a stale hit
    assert t.locales == ("es",) and t.localized_names("es") == {RINGS: "Anillos"}
    assert load_taxonomy(src).locales == ("es",)  # and the warm load keeps it


def test_bad_locale_file_is_a_clear_error(tmp_path: Path) -> None:
    for name in ("categories.json", "attributes.json"):
        (tmp_path / name).write_bytes((SAMPLE_TAXONOMY_DIR / name).read_bytes())
    (tmp_path / "localizations").mkdir()
    (tmp_path / "localizations" / "es.json.xz").write_bytes(b"not xz")
    with pytest.raises(TaxonomyError, match="compressed"):
        load_taxonomy(tmp_path, use_cache=False)
    (tmp_path / "localizations" / "es.json.xz").write_bytes(lzma.compress(b'{"locale": "es"}'))
    with pytest.raises(TaxonomyError, match="not a localized category file"):
        load_taxonomy(tmp_path, use_cache=False)


# -- correction ------------------------------------------------------------------------------


def test_corrector_maps_localized_paths_to_the_category(corrector: CategoryCorrector) -> None:
    cases = {
        ES_RINGS_PATH: ("exact_path", "es", False),
        "Ropa y Accesorios | Joyería | Anillos": ("exact_path", "es", True),
        JA_RINGS_PATH: ("exact_path", "ja", False),
        "Anillos": ("unique_leaf", "es", True),
        "Ropa y accesorios > Bisutería > Anillos": ("unique_leaf", "es", True),  # wrong middle level
        "指輪": ("unique_leaf", "ja", True),
        "Ropa y accesorios > Joyeria > Anilos": ("fuzzy", "es", True),  # accent dropped + typo
    }
    for raw, (method, locale, corrected) in cases.items():
        r = corrector.correct(raw)
        assert r.category is not None and r.category.id == RINGS, raw
        assert (r.method, r.locale, r.corrected) == (method, locale, corrected), raw


def test_english_correction_is_unchanged_by_locales(corrector: CategoryCorrector) -> None:
    english = CategoryCorrector(load_taxonomy(SAMPLE_TAXONOMY_DIR))
    for raw in (RINGS_PATH, "Rings", "Jewelry > Rigns", "Apparel > Clothing > Dresess", "Bavoreku", "Dress"):
        a, b = corrector.correct(raw), english.correct(raw)
        assert (a.category, a.method, a.score, a.locale) == (b.category, b.method, b.score, None), raw


def test_unknown_localized_leaf_stays_unresolved(corrector: CategoryCorrector) -> None:
    assert not corrector.correct("Ropa y accesorios > Joyería > Xqzwvbnm").resolved
    assert not corrector.correct("ロボット掃除機ではない何か").resolved


# -- fetch --locale --------------------------------------------------------------------------


@pytest.fixture()
def server(dist_layout: Path, tmp_path: Path) -> Iterator[str]:
    """Serves <tmp>/v2024-07/dist/<locale>/ like raw.githubusercontent.com serves a tag."""
    root = tmp_path / "www"
    (root / "v2024-07").mkdir(parents=True)
    (root / "v2024-07" / "dist").symlink_to(dist_layout, target_is_directory=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v{{version}}/dist/en"
    httpd.shutdown()


def test_fetch_locales(server: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path, t = fetch_release("2024-07", base_url=server, cache_dir=cache, locales=["es", "ja"])
    assert (path / "localizations" / "es.json").is_file() and t.locales == ("es", "ja")
    assert t.localized_full_name(RINGS, "es") == ES_RINGS_PATH
    # Cached English and es stay; only de is downloaded, and a forced re-fetch keeps them.
    _, t = fetch_release("2024-07", base_url=server, cache_dir=cache, locales=["de,es"])
    assert t.locales == LOCALES
    _, t = fetch_release("2024-07", base_url=server, cache_dir=cache, force=True)
    assert t.locales == LOCALES
    with pytest.raises(FetchError, match="HTTP 404.*'da'"):
        fetch_release("2024-07", base_url=server, cache_dir=cache, locales=["all"])
    assert not (path / "localizations" / "da.json").exists()
    with pytest.raises(FetchError, match="not a locale code"):
        fetch_release("2024-07", base_url=server, cache_dir=cache, locales=["../x"])


def test_locale_url() -> None:
    assert locale_url("https://h/v{version}/dist/en", "2024-07", "pt-BR") == "https://h/v2024-07/dist/pt-BR"
    assert locale_url("https://h/{version}/{locale}/", "2024-07", "ja") == "https://h/2024-07/ja"
    with pytest.raises(FetchError, match="locale"):
        locale_url("https://h/{version}/files", "2024-07", "es")


def test_cli_fetch_locale(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCTLENS_CACHE", str(tmp_path))
    args = ["taxonomy", "fetch", "--version", "2024-07", "--base-url", server, "--locale", "es", "--locale", "ja"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "locales es ja" in result.output
    assert (tmp_path / "taxonomy" / "releases" / "2024-07" / "localizations" / "ja.json").is_file()


# -- search ----------------------------------------------------------------------------------


def test_cli_search_by_localized_name(bundle_layout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(app, ["taxonomy", "search", "Joyería Anillos", "--taxonomy", str(bundle_layout)])
    assert result.exit_code == 0, result.output
    first = next(line for line in result.output.splitlines() if "aa-6-9" in line)
    assert RINGS_PATH in first and " es " in first and ES_RINGS_PATH in first
    exact = CliRunner().invoke(app, ["taxonomy", "search", ES_RINGS_PATH, "--taxonomy", str(bundle_layout)])
    assert f"corrector: {RINGS_PATH}" in " ".join(exact.output.split()) and "locale es" in exact.output
