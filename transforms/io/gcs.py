"""Google Cloud Storage through `google-cloud-storage`: a client factory, bounded object reads
(for `gs://` images), and the set-up that lets Beam's own `gs://` filesystem run against the
local emulator.

Production uses GCS with Application Default Credentials. Locally and in tests the object
store is fake-gcs-server (`deploy/local/gcs/gcs.sh up`), selected by the environment variable
`STORAGE_EMULATOR_HOST=http://127.0.0.1:4443`, which google-cloud-storage honours by itself.

Batch jobs read and write `gs://` snapshots with Beam's built-in GCS filesystem
(`ReadFromText`, `ReadFromParquet`, `WriteToText`, `WriteToParquet` take `gs://` paths
unchanged). Against the emulator Beam needs two patches that production never does; they
live with the emulator, in `deploy/local/gcs/emulator_patches.py` (applied at interpreter
start through `deploy/local/gcs/sitecustomize.py` when that folder is on PYTHONPATH).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

__all__ = [
    "EMULATOR_ENV",
    "LOCAL_PROJECT",
    "GcsError",
    "emulator_host",
    "parse_gs_url",
    "client",
    "read_bytes",
]

if TYPE_CHECKING:
    from google.cloud import storage

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
LOCAL_PROJECT = "productlens-local"  # any id: the emulator does not check it


class GcsError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # invalid_url | not_found | too_large | unreachable


def emulator_host() -> str | None:
    return os.environ.get(EMULATOR_ENV) or None


def parse_gs_url(url: str) -> tuple[str, str]:
    """`gs://bucket/path/to/object` -> (bucket, "path/to/object")."""
    if not url.startswith("gs://"):
        raise GcsError("invalid_url", f"not a gs:// URL: {url}")
    bucket, _, name = url[len("gs://") :].partition("/")
    if not bucket or not name or name.endswith("/"):
        raise GcsError("invalid_url", f"gs:// URL needs a bucket and an object name: {url}")
    return bucket, name


_clients: dict[tuple[str | None, str | None], storage.Client] = {}
_clients_lock = threading.Lock()


def client(project: str | None = None) -> storage.Client:
    """One `storage.Client` per process (and per emulator host and project).

    With STORAGE_EMULATOR_HOST set: anonymous credentials and a project id (from `project`,
    GOOGLE_CLOUD_PROJECT, or a local placeholder), so no ADC lookup happens. Otherwise
    Application Default Credentials, as on Dataflow and GKE.
    """
    host = emulator_host()
    key = (host, project)
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            from google.cloud import storage

            if host:
                from google.auth.credentials import AnonymousCredentials

                found = storage.Client(
                    project=project or os.environ.get("GOOGLE_CLOUD_PROJECT") or LOCAL_PROJECT,
                    credentials=AnonymousCredentials(),
                )
            else:
                found = storage.Client(project=project)
            _clients[key] = found
        return found


def _retry(timeout: float):  # type: ignore[no-untyped-def]
    from google.cloud.storage.retry import DEFAULT_RETRY

    # The library retries transient errors for up to 120 s by default; an image fetch is
    # bounded by its own timeout instead.
    return DEFAULT_RETRY.with_timeout(timeout)


def read_bytes(url: str, max_bytes: int, timeout: float) -> bytes:
    """The bytes of a `gs://` object, refused before download when its size (from the
    object's metadata) is over `max_bytes`. The download is pinned to the generation whose
    size was checked, so an object replaced in between cannot slip past the limit."""
    import requests
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    bucket_name, name = parse_gs_url(url)
    try:
        blob = client().bucket(bucket_name).get_blob(name, timeout=timeout, retry=_retry(timeout))
        if blob is None:
            raise GcsError("not_found", f"{url} does not exist")
        size = blob.size or 0
        if size > max_bytes:
            raise GcsError("too_large", f"{url} is {size} bytes, over the {max_bytes}-byte limit")
        data = blob.download_as_bytes(timeout=timeout, if_generation_match=blob.generation, retry=_retry(timeout))
    except GcsError:
        raise
    except api_exceptions.NotFound as exc:
        raise GcsError("not_found", f"{url} does not exist (or its bucket does not)") from exc
    except api_exceptions.PreconditionFailed as exc:
        raise GcsError("unreachable", f"{url} changed while it was read; retry") from exc
    except api_exceptions.Forbidden as exc:
        raise GcsError("unreachable", f"{url} is not readable with these credentials (HTTP 403)") from exc
    except (
        api_exceptions.GoogleAPIError,
        auth_exceptions.GoogleAuthError,
        requests.RequestException,
        TimeoutError,
        OSError,
    ) as exc:
        raise GcsError("unreachable", f"{url} is unreachable: {exc}") from exc
    if len(data) > max_bytes:
        raise GcsError("too_large", f"{url} is over the {max_bytes}-byte limit")
    return data
