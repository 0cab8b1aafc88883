"""`taxonomy fetch` against a local HTTP server (there is no internet here or in CI)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from taxonomy.fetch import FetchError, fetch_release
from tests.conftest import SHARED_TAXONOMY

SAMPLE = Path(__file__).resolve().parents[2] / "taxonomy" / "data" / "sample-2024-07"


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    """Serves <tmp>/v<version>/dist/en/ like raw.githubusercontent.com serves a tag."""
    source = SHARED_TAXONOMY if (SHARED_TAXONOMY / "categories.json").is_file() else SAMPLE
    root = tmp_path / "www"
    dist = root / "v2024-07" / "dist" / "en"
    dist.mkdir(parents=True)
    for name in ("categories.json", "attributes.json"):
        (dist / name).symlink_to(source / name)
    (root / "v2099-01" / "dist" / "en").mkdir(parents=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v{{version}}/dist/en"
    httpd.shutdown()


def test_fetch_downloads_validates_and_caches(server: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path, t = fetch_release("2024-07", base_url=server, cache_dir=cache)
    assert path == cache / "releases" / "2024-07"
    assert (path / "categories.json").is_file() and t.version == "2024-07" and len(t) > 800
    again, _ = fetch_release("2024-07", base_url="http://127.0.0.1:9/{version}", cache_dir=cache)
    assert again == path  # served from the cache: the dead URL is never touched


def test_fetch_unknown_version_is_a_clear_error(server: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_release("2099-01", base_url=server, cache_dir=tmp_path)
    assert not (tmp_path / "releases" / "2099-01").exists()  # nothing half-written


def test_fetch_refuses_a_version_mismatch(server: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="say 2024-07"):
        fetch_release("2024-10", base_url=server.replace("v{version}", "v2024-07"), cache_dir=tmp_path)


def test_cli_fetch(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCTLENS_CACHE", str(tmp_path))
    result = CliRunner().invoke(app, ["taxonomy", "fetch", "--version", "2024-07", "--base-url", server])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "taxonomy" / "releases" / "2024-07") in result.output
    bad = CliRunner().invoke(app, ["taxonomy", "fetch", "--version", "2099-01", "--base-url", server])
    assert bad.exit_code == 2 and "HTTP 404" in " ".join(bad.output.split())
