"""API keys for the service: `Authorization: Bearer KEY` or `X-API-Key: KEY`.

Keys come from the environment (`PRODUCTLENS_API_KEYS`, comma-separated), never from a
command-line flag, which every user of the machine can read in the process list. A server
that binds beyond loopback refuses to start without keys (`require_keys_for`): merchant
data and model capacity are not for anyone who can reach the port.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

__all__ = ["API_KEYS_ENV", "ApiKeys", "is_loopback", "require_keys_for"]

API_KEYS_ENV = "PRODUCTLENS_API_KEYS"


class ApiKeys:
    def __init__(self, keys: frozenset[str]) -> None:
        self._keys = tuple(k.encode() for k in keys)

    @classmethod
    def from_env(cls, env: str = API_KEYS_ENV) -> ApiKeys:
        raw = os.environ.get(env, "")
        return cls(frozenset(k.strip() for k in raw.split(",") if k.strip()))

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def allows(self, authorization: str | None, api_key: str | None) -> bool:
        """True when no keys are configured, or the request presents one of them."""
        if not self._keys:
            return True
        presented = api_key
        if presented is None and authorization:
            scheme, _, token = authorization.partition(" ")
            presented = token.strip() if scheme.lower() == "bearer" else None
        if not presented:
            return False
        candidate = presented.encode()
        # Compare with every key in constant time: the answer must not leak a prefix.
        return any(hmac.compare_digest(candidate, key) for key in self._keys)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_keys_for(host: str, keys: ApiKeys) -> None:
    """ValueError when `host` reaches beyond loopback and no API key is configured."""
    if not is_loopback(host) and not keys.enabled:
        raise ValueError(
            f"--host {host} reaches beyond loopback: set API keys in {API_KEYS_ENV} (comma-separated) so that only "
            "clients with a key are served"
        )
