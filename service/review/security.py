"""Sessions, CSRF and response headers of the review app (`/review`).

The review app is the only part of the service a browser talks to, so its protections are
scoped to its prefix and the JSON API (`/v1/...`, API keys) is untouched:

- **Session**: a cookie signed with itsdangerous (HMAC-SHA256 over the JSON payload and a
  timestamp, keyed by the secret given to `mount_review`). HttpOnly (no script reads it),
  SameSite=Lax (not sent on cross-site POSTs), Path=/review, Secure when the service is
  behind TLS, and it expires `SESSION_TTL_S` after login (the payload's `iat`): an older
  session is refused even if a browser kept the cookie. The payload holds the username and the CSRF token only; the role is read
  from the store on every request, so a deactivated account or a changed role takes effect
  at once.
- **CSRF**: one random token per session (a visitor who has not logged in gets one too, for
  the login form). Every state-changing request carries it, in the form field `csrf_token`
  or the `X-CSRF-Token` header of a fetch, and it is compared in constant time. A request
  whose `Origin` names another site is refused as well. Login rotates the token (no
  session fixation).
- **Headers**: a Content-Security-Policy with no inline script or style (all JS and CSS are
  the app's own static files), images from anywhere over http(s) (merchant images load in
  the reviewer's browser, never proxied by the service), no framing, no referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "COOKIE_NAME",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SECURITY_HEADERS",
    "SESSION_TTL_S",
    "ReviewSessions",
    "Session",
    "SessionCodec",
    "csrf_ok",
    "same_origin",
    "session_of",
]

COOKIE_NAME = "productlens_review"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_S = 8 * 3600

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: http: data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # same-origin: a form POST keeps its Origin (no-referrer makes it "null"); other sites get
    # no referrer, and merchant images carry referrerpolicy=no-referrer themselves.
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


class Session(dict[str, Any]):
    """The session payload; `modified` says the cookie must be re-issued."""

    modified: bool = False
    cleared: bool = False

    def set(self, **values: Any) -> None:
        self.update(values)
        self.modified = True

    def restart(self, **values: Any) -> None:
        """A new session (login, logout): a fresh CSRF token, nothing kept."""
        self.clear()
        self.update(values, csrf=secrets.token_urlsafe(32), iat=int(time.time()))
        self.modified = True

    @property
    def csrf(self) -> str:
        token = self.get("csrf")
        if not isinstance(token, str) or not token:
            token = secrets.token_urlsafe(32)
            self.set(csrf=token, iat=int(time.time()))
        return token

    @property
    def username(self) -> str | None:
        user = self.get("user")
        return user if isinstance(user, str) else None


class SessionCodec:
    def __init__(self, secret_key: str, ttl_s: int = SESSION_TTL_S) -> None:
        if len(secret_key) < 16:
            raise ValueError("the review app's session secret must have at least 16 characters")
        self._serializer = URLSafeTimedSerializer(
            secret_key, salt="productlens-review-session", signer_kwargs={"digest_method": hashlib.sha256}
        )
        self.ttl_s = ttl_s

    def dumps(self, session: dict[str, Any]) -> str:
        return self._serializer.dumps(dict(session))

    def loads(self, raw: str | None) -> Session:
        if not raw:
            return Session()
        try:
            data = self._serializer.loads(raw, max_age=self.ttl_s)
        except BadSignature:  # also SignatureExpired
            return Session()
        if not isinstance(data, dict):
            return Session()
        session = Session(data)
        # The cookie is re-signed whenever it changes; the login time bounds its life.
        iat = data.get("iat")
        if not isinstance(iat, int) or time.time() - iat > self.ttl_s:
            return Session()
        return session


class ReviewSessions:
    """ASGI middleware for paths under `prefix`: decodes the session cookie into
    `scope["review_session"]`, re-issues it when the session changed, and adds the security
    headers to every response. Other paths pass through untouched."""

    def __init__(self, app: ASGIApp, *, codec: SessionCodec, prefix: str = "/review", secure: bool = False) -> None:
        self.app = app
        self.codec = codec
        self.prefix = prefix.rstrip("/")
        self.secure = secure

    def _applies(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._applies(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        raw = None
        for name, value in scope.get("headers") or []:
            if name == b"cookie":
                cookie: SimpleCookie = SimpleCookie()
                try:
                    cookie.load(value.decode("latin-1"))
                except Exception:  # noqa: BLE001 - a malformed Cookie header is no session
                    continue
                if COOKIE_NAME in cookie:
                    raw = cookie[COOKIE_NAME].value
        session = self.codec.loads(raw)
        scope["review_session"] = session

        async def send_with_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers.setdefault(k, v)
                headers.setdefault("cache-control", "no-store")
                if session.modified:
                    headers.append("set-cookie", self._cookie(session))
            await send(message)

        await self.app(scope, receive, send_with_session)

    def _cookie(self, session: Session) -> str:
        attrs = f"Path={self.prefix}; HttpOnly; SameSite=Lax" + ("; Secure" if self.secure else "")
        if not session:
            return f"{COOKIE_NAME}=; Max-Age=0; {attrs}"
        return f"{COOKIE_NAME}={self.codec.dumps(session)}; Max-Age={self.codec.ttl_s}; {attrs}"


def session_of(request: Request) -> Session:
    session = request.scope.get("review_session")
    if session is None:  # the middleware is not installed: fail closed
        raise RuntimeError("the review session middleware is not installed (mount_review)")
    return session


def csrf_ok(session: Session, presented: str | None) -> bool:
    """The presented token equals the session's, compared in constant time."""
    expected = session.get("csrf")
    if not isinstance(expected, str) or not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def same_origin(request: Request) -> bool:
    """False when the request names another origin (Origin, else Referer) than its Host."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return True  # non-browser clients and privacy settings send neither
        origin = referer
    if origin == "null":
        return False
    return urlsplit(origin).netloc == host
