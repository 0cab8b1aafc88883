"""Fetch one image over HTTP(S) from an untrusted URL without becoming an SSRF proxy.

Threat model (see DESIGN.md "Untrusted input"): the URL, the DNS answers for its host, and
everything the server sends are attacker-controlled. So:

* every hop (the URL and each redirect) is parsed, resolved and checked by
  :mod:`transforms.images.address_policy`, and the connection goes to exactly the address that
  was checked: no second DNS lookup, so DNS rebinding cannot swap in 127.0.0.1 between
  check and connect. Host header, TLS SNI and certificate verification still use the
  original host name;
* one total deadline covers DNS, connect, TLS, headers and body across all hops. Socket
  timeouts alone only bound each read, so a server dripping a byte a second would hold a
  worker forever; a watchdog timer shuts the socket down when the deadline passes;
* the body is read in chunks and refused past ``max_bytes``;
* proxy environment variables are never consulted (http.client does not read them);
  only an explicit ``AddressPolicy.proxy`` is used;
* whatever goes wrong surfaces as :class:`FetchError` with one of four kinds and a
  merchant-facing message that never says what an internal address answered.
"""

from __future__ import annotations

import http.client
import math
import socket
import ssl
import threading
import time
import urllib.parse

from transforms.images.address_policy import (
    AddressPolicy,
    AddressRefused,
    HostUnresolvable,
    Resolved,
    echo_url,
    getaddrinfo_bounded,
    parse_image_url,
    proxy_host_port,
    resolve_checked,
    unsafe_url_chars,
)

__all__ = [
    "FETCH_ERROR_KINDS",
    "FetchError",
    "fetch_http",
]

FETCH_ERROR_KINDS = ("refused", "unreachable", "too_large", "timeout")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


class FetchError(Exception):
    """An image that could not be fetched. ``kind`` is one of FETCH_ERROR_KINDS;
    ``str()`` is a merchant-facing reason."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in FETCH_ERROR_KINDS:
            raise ValueError(f"FetchError kind must be one of {FETCH_ERROR_KINDS}, got {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __reduce__(self) -> tuple[type[FetchError], tuple[str, str]]:
        # Beam pickles exceptions that cross a DoFn boundary; the default reduce would
        # call FetchError(message) and fail.
        return (FetchError, (self.kind, self.message))


class _Expired(Exception):
    """The total deadline passed; mapped to FetchError("timeout")."""


class _Deadline:
    """One total deadline for a fetch, enforced two ways.

    ``remaining()`` feeds socket timeouts before each blocking step; a Timer shuts the
    connection down when the deadline passes, which wakes a read that per-read timeouts
    never stop (a server that sends one byte just before each timeout would).
    The watchdog shuts down a dup() of each socket: shutdown acts on the connection,
    not the descriptor, and owning the dup means the descriptor can never have been
    closed and reused for an unrelated socket when the timer fires.
    """

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._watches: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if self.expired or left <= 0:
            raise _Expired()
        return left

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                raise _Expired()
            self._watches.append(sock.dup())

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            for watch in self._watches:
                try:
                    watch.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # not connected yet, or already gone: nothing to wake

    def release(self) -> None:
        """Close this hop's watches (the connection itself is closed by its owner)."""
        with self._lock:
            watches, self._watches = self._watches, []
        for watch in watches:
            watch.close()

    def cancel(self) -> None:
        self._timer.cancel()
        self.release()


_tls_lock = threading.Lock()
_tls_cached: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    """The system trust store with hostname checks; built once (loading CAs is slow).
    Tests replace this function to trust their own CA."""
    global _tls_cached
    with _tls_lock:
        if _tls_cached is None:
            _tls_cached = ssl.create_default_context()
        return _tls_cached


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _host_header(host: str, port: int, default_port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default_port else f"{shown}:{port}"


def _set_timeout(sock: socket.socket | None, seconds: float) -> None:
    if sock is None:
        return
    try:
        sock.settimeout(seconds)
    except OSError:
        pass  # already closed: the next read reports it


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection that connects to pre-checked addresses instead of resolving
    ``host`` again. ``host`` is kept only for the Host header (and SNI for HTTPS)."""

    def __init__(self, host: str, port: int, *, addresses: list[Resolved], clock: _Deadline) -> None:
        super().__init__(host, port)
        self._addresses = addresses
        self._clock = clock
        # http.client drops self.sock when the response takes the connection over;
        # keep the outermost socket to keep setting read timeouts on it.
        self.live_sock: socket.socket | None = None

    def _open_tcp(self) -> socket.socket:
        last: OSError | None = None
        for family, sockaddr in self._addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                self._clock.track(sock)
                sock.settimeout(self._clock.remaining())
                sock.connect(sockaddr)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError as exc:  # try the host's next checked address, like create_connection
                sock.close()
                last = exc
            except BaseException:
                sock.close()
                raise
        raise last if last is not None else OSError("no address to connect to")

    def connect(self) -> None:
        self.sock = self.live_sock = self._open_tcp()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """TLS to a pinned address (directly or through a CONNECT tunnel), with SNI and
    certificate hostname verification against the original host name."""

    default_port = http.client.HTTPS_PORT

    def __init__(
        self,
        host: str,
        port: int,
        *,
        addresses: list[Resolved],
        clock: _Deadline,
        tunnel_authority: str | None = None,
    ) -> None:
        super().__init__(host, port, addresses=addresses, clock=clock)
        self._tunnel_authority = tunnel_authority

    def connect(self) -> None:
        raw = self._open_tcp()
        self.sock = self.live_sock = raw
        if self._tunnel_authority is not None:
            self._open_tunnel(raw, self._tunnel_authority)
        # Handshake after wrapping so the socket is already ours to time out: with
        # do_handshake_on_connect a stalled handshake would run on the raw timeout.
        tls = _tls_context().wrap_socket(raw, server_hostname=self.host, do_handshake_on_connect=False)
        self.sock = self.live_sock = tls
        tls.settimeout(self._clock.remaining())
        tls.do_handshake()

    def _open_tunnel(self, sock: socket.socket, authority: str) -> None:
        # Our own CONNECT rather than set_tunnel(): it names the checked IP (set_tunnel
        # on 3.11 also mangles IPv6 literals) and keeps SNI on the original host.
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("ascii"))
        sock.settimeout(self._clock.remaining())
        reply = http.client.HTTPResponse(sock, method="CONNECT")
        try:
            reply.begin()  # http.client's line and header-count limits apply
            if reply.status != 200:
                raise OSError(f"proxy answered CONNECT with HTTP {reply.status}")
        finally:
            reply.close()


def _request_target(parts: urllib.parse.SplitResult) -> str:
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    # Non-ASCII paths are common in merchant URLs; browsers percent-encode them and
    # http.client would refuse them. Existing %XX escapes are kept as they are.
    return urllib.parse.quote(target, safe="/%:@!$&'()*+,;=?~-._")


def fetch_http(
    url: str,
    *,
    policy: AddressPolicy,
    max_bytes: int,
    deadline_s: float,
    user_agent: str = "productlens/0.1",
) -> bytes:
    """The bytes at an http(s) image URL, within `deadline_s` seconds in total and at
    most `max_bytes` bytes. Raises FetchError and nothing else for anything the URL, DNS
    or the server do (a deadline of 0 or less is a "timeout"); ValueError/TypeError only
    for arguments that are not what the signature says (a caller bug)."""
    if not isinstance(policy, AddressPolicy):
        raise TypeError(f"fetch_http needs an AddressPolicy, got {type(policy).__name__}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"fetch_http max_bytes must be a positive integer, got {max_bytes!r}")
    if isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float)) or not math.isfinite(deadline_s):
        raise ValueError(f"fetch_http deadline_s must be a finite number of seconds, got {deadline_s!r}")
    if not isinstance(user_agent, str) or not user_agent.isascii() or not user_agent.isprintable():
        raise ValueError(f"fetch_http user_agent must be printable ASCII, got {user_agent!r}")

    shown = echo_url(url)
    if deadline_s <= 0:
        # A caller passing what is left of a larger budget may have nothing left: that is
        # a timeout of this image, not a bug.
        raise _timeout(shown, deadline_s)
    clock = _Deadline(float(deadline_s))
    try:
        return _fetch(url, shown, policy, max_bytes, clock, user_agent)
    except FetchError as exc:
        if clock.expired and exc.kind == "unreachable":
            # The watchdog's shutdown looks like an early close to the code that saw it.
            raise _timeout(shown, deadline_s) from exc
        raise
    except HostUnresolvable as exc:
        if exc.timed_out or clock.expired:
            raise _timeout(shown, deadline_s) from None
        # Same kind and words as a refusal: "does not resolve" vs "refused" would tell a
        # scanner which internal host names exist.
        raise FetchError("refused", _refused_message(shown)) from None
    except AddressRefused:
        raise FetchError("refused", _refused_message(shown)) from None
    except (_Expired, TimeoutError) as exc:
        raise _timeout(shown, deadline_s) from exc
    except ssl.SSLCertVerificationError as exc:
        if clock.expired:
            raise _timeout(shown, deadline_s) from exc
        raise FetchError("unreachable", f"image {shown} cannot be fetched: its TLS certificate is not valid") from exc
    except Exception as exc:
        # Malformed HTTP (HTTPException), resets and TLS errors (OSError), broken chunk
        # sizes (ValueError), anything else: one generic reason. The cause stays chained
        # for operators; the message says nothing a scan could use.
        if clock.expired:
            raise _timeout(shown, deadline_s) from exc
        raise FetchError("unreachable", f"image {shown} is unreachable or did not answer with valid HTTP") from exc
    finally:
        clock.cancel()


def _timeout(shown: str, deadline_s: float) -> FetchError:
    return FetchError("timeout", f"image {shown} was not fetched within {deadline_s:g} s")


def _refused_message(shown: str, *, redirected: bool = False) -> str:
    via = " (it redirects to a URL that is not)" if redirected else ""
    return f"image URL {shown} is not allowed: only http(s) hosts that resolve to public addresses are fetched{via}"


def _fetch(url: str, shown: str, policy: AddressPolicy, max_bytes: int, clock: _Deadline, user_agent: str) -> bytes:
    current = url
    for hop in range(policy.max_redirects + 1):
        try:
            parts = parse_image_url(current)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
            addresses = resolve_checked(host, port, policy, timeout_s=clock.remaining())
        except HostUnresolvable:
            raise
        except AddressRefused:
            # Same generic reason for the first hop and any redirect: which of our
            # checks failed, and why, is not the merchant's (or a scanner's) business.
            raise FetchError("refused", _refused_message(shown, redirected=hop > 0)) from None
        try:
            status, location, body = _one_request(
                parts, shown, host, port, addresses, policy, max_bytes, clock, user_agent
            )
        finally:
            clock.release()
        if status in _REDIRECTS:
            if not location:
                raise FetchError("unreachable", f"image {shown} answered HTTP {status} without a Location to follow")
            if unsafe_url_chars(location):
                raise FetchError("refused", _refused_message(shown, redirected=True))
            if hop == policy.max_redirects:
                raise FetchError(
                    "refused",
                    f"image URL {shown} redirects more than {policy.max_redirects} times; link the image itself",
                )
            try:
                current = urllib.parse.urljoin(current, location)
            except ValueError:  # e.g. an unbalanced "[" in the Location
                raise FetchError("refused", _refused_message(shown, redirected=True)) from None
            continue
        if not 200 <= status < 300:
            raise FetchError("unreachable", f"image {shown} answered HTTP {status}")
        return body
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _one_request(
    parts: urllib.parse.SplitResult,
    shown: str,
    host: str,
    port: int,
    addresses: list[Resolved],
    policy: AddressPolicy,
    max_bytes: int,
    clock: _Deadline,
    user_agent: str,
) -> tuple[int, str | None, bytes]:
    """One GET on one pinned connection: (status, Location for redirects, body for 2xx)."""
    https = parts.scheme == "https"
    pinned = addresses[0][1][0]
    target = _request_target(parts)
    connect_to = addresses
    tunnel: str | None = None
    if policy.proxy is not None:
        # The proxy is our infrastructure: its name is resolved but not policy-checked.
        # It is handed the checked IP, not the name, so it cannot be rebound either.
        proxy_host, proxy_port = proxy_host_port(policy.proxy)
        try:
            connect_to = getaddrinfo_bounded(proxy_host, proxy_port, min(clock.remaining(), policy.dns_timeout_s))
        except HostUnresolvable as exc:
            # Our configuration, not the merchant's URL: never reported as "host does not resolve".
            if exc.timed_out:
                raise _Expired() from None
            raise OSError("the configured proxy does not resolve") from None
        if https:
            tunnel = _authority(pinned, port)
        else:
            target = f"http://{_authority(pinned, port)}{target}"

    conn: _PinnedHTTPConnection
    if https:
        conn = _PinnedHTTPSConnection(host, port, addresses=connect_to, clock=clock, tunnel_authority=tunnel)
    else:
        conn = _PinnedHTTPConnection(host, port, addresses=connect_to, clock=clock)
    response: http.client.HTTPResponse | None = None
    try:
        # skip_host: http.client would take Host from an absolute-form (proxy) target.
        # Accept-Encoding stays http.client's "identity": we never decompress.
        conn.putrequest("GET", target, skip_host=True)
        conn.putheader("Host", _host_header(host, port, conn.default_port))
        conn.putheader("User-Agent", user_agent)
        conn.putheader("Accept", "image/*, */*;q=0.5")
        conn.putheader("Connection", "close")
        conn.endheaders()  # connects (to the pinned address) and sends
        _set_timeout(conn.live_sock, clock.remaining())
        response = conn.getresponse()
        status = response.status
        if status in _REDIRECTS:
            return status, response.getheader("Location"), b""
        if not 200 <= status < 300:
            return status, None, b""
        return status, None, _read_body(response, conn, shown, max_bytes, clock)
    finally:
        if response is not None:
            response.close()
        conn.close()


def _read_body(
    response: http.client.HTTPResponse,
    conn: _PinnedHTTPConnection,
    shown: str,
    max_bytes: int,
    clock: _Deadline,
) -> bytes:
    declared = response.getheader("Content-Length")
    expected = int(declared) if declared and declared.isascii() and declared.isdigit() else None
    if expected is not None and expected > max_bytes:
        raise FetchError("too_large", f"image {shown} declares {expected} bytes, over the {max_bytes}-byte limit")
    chunks: list[bytes] = []
    total = 0
    while True:
        _set_timeout(conn.live_sock, clock.remaining())
        # At most one byte past the budget: enough to know it is over, no more.
        chunk = response.read(min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise FetchError("too_large", f"image {shown} is over the {max_bytes}-byte limit")
        chunks.append(chunk)
    if clock.expired:
        raise _Expired()  # the watchdog's shutdown reads as EOF: a timeout, not a short image
    if expected is not None and not response.chunked and total < expected:
        # http.client returns a short body silently when the server closes early.
        raise FetchError("unreachable", f"image {shown} ended after {total} of {expected} bytes")
    return b"".join(chunks)
