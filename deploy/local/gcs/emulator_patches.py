"""Patches that let Beam's own `gs://` filesystem run against fake-gcs-server.

Local and test use only: production (Dataflow, GKE) talks to GCS and never needs them,
which is why they live here with the emulator and not in `transforms/`. They are applied
at interpreter start by `sitecustomize.py` in this folder when it is on PYTHONPATH and
STORAGE_EMULATOR_HOST is set, or by calling `configure_beam_for_emulator()` (the tests do).
"""

from __future__ import annotations

import itertools
import os
import threading

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
    if not os.environ.get("STORAGE_EMULATOR_HOST"):
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
