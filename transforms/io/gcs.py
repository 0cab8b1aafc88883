"""Google Cloud Storage through `google-cloud-storage`: a client factory, bounded object reads
(for `gs://` images), and the set-up that lets Beam's own `gs://` filesystem run against the
local emulator.

Production uses GCS with Application Default Credentials. Locally and in tests the object
store is fake-gcs-server (`deploy/local/gcs/gcs.sh up`), selected by the environment variable
`STORAGE_EMULATOR_HOST=http://127.0.0.1:4443`, which google-cloud-storage honours by itself.

Batch jobs read and write `gs://` snapshots with Beam's built-in GCS filesystem
(`ReadFromText`, `ReadFromParquet`, `WriteToText`, `WriteToParquet` take `gs://` paths
unchanged). Against the emulator that needs one call, `configure_beam_for_emulator()`, in the
process that runs the pipeline (the FnApiRunner runs it in-process); see its docstring.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import TYPE_CHECKING

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
        data = blob.download_as_bytes(
            timeout=timeout, if_generation_match=blob.generation, retry=_retry(timeout)
        )
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


_configured = False
_configure_lock = threading.Lock()


def configure_beam_for_emulator() -> bool:
    """Make Beam's `gs://` filesystem work against fake-gcs-server; a no-op (False) when
    STORAGE_EMULATOR_HOST is not set, so it is safe to call from every job's `run`.

    Beam 2.77's GcsIO already uses google-cloud-storage, so it reaches the emulator through
    STORAGE_EMULATOR_HOST with no pipeline option. Two things still go wrong locally:

    1. Credentials: GcsIO looks up Application Default Credentials with 4 retries and
       exponential backoff (about 27 s on a machine without ADC) before falling back to an
       anonymous client. The emulator needs none, so Beam's per-process credential cache is
       seeded with "no credentials" (-> `storage.Client.create_anonymous_client()`, which
       honours the emulator host).
    2. Batch requests: file sinks finalize by copying and deleting temp files with the JSON
       batch API. google-cloud-storage sends batch parts without a Content-ID header, and
       fake-gcs-server skips such parts, answering an empty multipart body ("Bad response:
       not multi-part"). Each part gets a Content-ID, as the GCS batch documentation shows
       (real GCS accepts either).

    Both patches touch only this process. Dataflow never sets STORAGE_EMULATOR_HOST.
    """
    global _configured
    if not emulator_host():
        return False
    with _configure_lock:
        if _configured:
            return True
        from apache_beam.internal.gcp import auth

        with auth._Credentials._credentials_lock:
            auth._Credentials._credentials = None
            auth._Credentials._credentials_init = True

        from google.cloud.storage import batch

        ids = itertools.count(1)
        original_init = batch.MIMEApplicationHTTP.__init__

        def init_with_content_id(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            original_init(self, *args, **kwargs)
            if "Content-ID" not in self:
                self["Content-ID"] = f"<productlens+{next(ids)}>"

        batch.MIMEApplicationHTTP.__init__ = init_with_content_id
        _configured = True
    return True
