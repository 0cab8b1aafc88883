"""fetch_http against real loopback servers started by the tests: redirects, deadlines,
malformed answers, proxies and TLS. Nothing leaves loopback."""

from __future__ import annotations

import datetime
import ipaddress
import pickle
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from transforms.images import address_policy, http_fetch
from transforms.images.address_policy import AddressPolicy
from transforms.images.http_fetch import FetchError, fetch_http

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
LOCAL = AddressPolicy(allow_private=True)

Handler = Callable[[socket.socket, bytes, "RawServer"], None]


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class RawServer:
    """A TCP (optionally TLS) server on loopback that hands each request head to
    `handler`, which writes whatever bytes it likes. Counts connections it accepted."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.accepted = 0
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)  # so the accept loop notices stop
        self.port: int = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            head = _read_head(conn)
            self.requests.append(head)
            self.handler(conn, head, self)
        except (OSError, ValueError):
            pass  # the client went away: expected in the deadline and error tests
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()

    def url(self, path: str = "/img.png", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(handler, host, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def answer(status: int = 200, body: bytes = PNG, headers: dict[str, str] | None = None) -> Handler:
    def handler(conn: socket.socket, head: bytes, server: RawServer) -> None:
        lines = [f"HTTP/1.1 {status} X", "Content-Type: image/png", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    return handler


def raw(data: bytes) -> Handler:
    def handler(conn: socket.socket, head: bytes, server: RawServer) -> None:
        conn.sendall(data)

    return handler


def _path(head: bytes) -> str:
    return head.split(b"\r\n", 1)[0].split(b" ")[1].decode()


def _header(head: bytes, name: str) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.decode("latin-1").partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def hops() -> Handler:
    """/hopN redirects to /hopN-1 (relative Location); /hop0 is the image."""

    def handler(conn: socket.socket, head: bytes, server: RawServer) -> None:
        n = int(_path(head).removeprefix("/hop"))
        if n == 0:
            answer()(conn, head, server)
        else:
            answer(302, b"", {"Location": f"/hop{n - 1}"})(conn, head, server)

    return handler


def _fetch(url: str, policy: AddressPolicy = LOCAL, *, max_bytes: int = 10_000, deadline_s: float = 3.0) -> bytes:
    return fetch_http(url, policy=policy, max_bytes=max_bytes, deadline_s=deadline_s)


def _fails(url: str, kind: str, policy: AddressPolicy = LOCAL, **kwargs: float) -> FetchError:
    with pytest.raises(FetchError) as info:
        _fetch(url, policy, **kwargs)  # type: ignore[arg-type]
    assert info.value.kind == kind, str(info.value)
    return info.value


# --- happy path and status codes -------------------------------------------------


def test_fetches_image_bytes_with_sane_headers(serve: Callable[..., RawServer]) -> None:
    server = serve(answer())
    assert _fetch(server.url()) == PNG
    head = server.requests[0]
    assert head.startswith(b"GET /img.png HTTP/1.1\r\n")
    assert _header(head, "Host") == f"127.0.0.1:{server.port}"
    assert _header(head, "User-Agent") == "productlens/0.1"
    assert _header(head, "Accept-Encoding") == "identity"  # never a compressed body


def test_localhost_name_connects_to_a_checked_address(serve: Callable[..., RawServer]) -> None:
    # "localhost" may resolve to ::1 first; the server only listens on 127.0.0.1, so this
    # also covers falling through to the next checked address.
    server = serve(answer())
    assert _fetch(server.url(host="localhost")) == PNG
    assert _header(server.requests[0], "Host") == f"localhost:{server.port}"


def test_non_ascii_path_is_percent_encoded(serve: Callable[..., RawServer]) -> None:
    server = serve(answer())
    assert _fetch(server.url("/bilder/straße.png?x=1")) == PNG
    assert _path(server.requests[0]) == "/bilder/stra%C3%9Fe.png?x=1"


def test_http_error_status_is_unreachable(serve: Callable[..., RawServer]) -> None:
    server = serve(answer(404, b"not found"))
    error = _fails(server.url(), "unreachable")
    assert str(error) == f"image {server.url()} answered HTTP 404"


def test_redirects_up_to_the_limit_are_followed(serve: Callable[..., RawServer]) -> None:
    server = serve(hops())
    assert _fetch(server.url("/hop3")) == PNG
    assert [_path(h) for h in server.requests] == ["/hop3", "/hop2", "/hop1", "/hop0"]


def test_a_fourth_redirect_is_refused(serve: Callable[..., RawServer]) -> None:
    server = serve(hops())
    error = _fails(server.url("/hop4"), "refused")
    assert "redirects more than 3 times" in str(error)
    assert len(server.requests) == 4  # the fifth URL is never requested


def test_redirect_without_location_is_unreachable(serve: Callable[..., RawServer]) -> None:
    server = serve(answer(302, b""))
    _fails(server.url(), "unreachable")


@pytest.mark.parametrize(
    "target", ["ftp://127.0.0.1/x.png", "file:///etc/passwd", "gopher://127.0.0.1:70/_x", "http://[::1"]
)
def test_redirect_to_another_scheme_or_a_bad_url_is_refused(serve: Callable[..., RawServer], target: str) -> None:
    server = serve(answer(301, b"", {"Location": target}))
    error = _fails(server.url(), "refused")
    assert "redirects to a URL that is not" in str(error)


# --- address policy at fetch time ------------------------------------------------


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "0x7f000001", "2130706433", "127.1", "0177.0.0.1", "[::ffff:127.0.0.1]"]
)
def test_default_policy_refuses_loopback_before_connecting(serve: Callable[..., RawServer], host: str) -> None:
    server = serve(answer())
    error = _fails(server.url(host=host), "refused", AddressPolicy())
    assert str(error).startswith("image URL ")
    assert "only http(s) hosts that resolve to public addresses are fetched" in str(error)
    assert server.accepted == 0  # refused before any packet


def test_default_policy_refuses_ipv6_loopback(serve: Callable[..., RawServer]) -> None:
    try:
        server = serve(answer(), host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    _fails(server.url(host="[::1]"), "refused", AddressPolicy())
    assert server.accepted == 0


def test_allow_list_miss_is_refused(serve: Callable[..., RawServer]) -> None:
    server = serve(answer())
    _fails(server.url(), "refused", AddressPolicy(allow_private=True, allowed_hosts=("cdn.example",)))
    assert server.accepted == 0


def test_redirect_off_the_allow_list_is_refused(serve: Callable[..., RawServer]) -> None:
    second = serve(answer())
    first = serve(answer(302, b"", {"Location": second.url(host="localhost")}))
    policy = AddressPolicy(allow_private=True, allowed_hosts=("127.0.0.1",))
    _fails(first.url(), "refused", policy)
    assert first.accepted == 1
    assert second.accepted == 0


def test_every_hop_is_checked_against_the_public_rule(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend 127.0.0.1 is a public CDN so the default policy fetches it; its redirect
    # to another loopback address (a stand-in for the metadata server) must be refused.
    real = address_policy.is_public_address
    monkeypatch.setattr(
        address_policy, "is_public_address", lambda ip: ip == ipaddress.ip_address("127.0.0.1") or real(ip)
    )
    direct = serve(answer())
    assert _fetch(direct.url(), AddressPolicy()) == PNG  # the stand-in "CDN" itself is fetched
    internal = serve(answer(), host="127.0.0.2")
    for target in (
        internal.url(host="127.0.0.2"),
        f"http://[::1]:{internal.port}/",
        f"http://0x7f000002:{internal.port}/",
    ):
        public = serve(answer(302, b"", {"Location": target}))
        error = _fails(public.url(), "refused", AddressPolicy())
        assert "127.0.0.2" not in str(error)
    assert internal.accepted == 0


def test_malformed_urls_are_refused_as_fetch_errors() -> None:
    for url in ("http://[::1", "http://h:abc/", "http://a b/", "http://x/\n", "file:///etc/passwd", "http://u:p@h/"):
        _fails(url, "refused", AddressPolicy())


# --- the total deadline -----------------------------------------------------------


def _drip(head_first: bytes, interval: float) -> Handler:
    def handler(conn: socket.socket, head: bytes, server: RawServer) -> None:
        conn.sendall(head_first)
        while not server.stop.is_set():
            conn.sendall(b"x")
            time.sleep(interval)

    return handler


def _stall(conn: socket.socket, head: bytes, server: RawServer) -> None:
    server.stop.wait(10)


@pytest.mark.parametrize(
    "handler",
    [
        # Body at one byte per 0.5 s: each read returns in time, only the watchdog stops it.
        _drip(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 0.5),
        # Same without Content-Length: a half-read body must not come back as an image.
        _drip(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", 0.3),
        # Headers that never end.
        _drip(b"HTTP/1.1 200 OK\r\nX-Slow: ", 0.2),
        # Accept, then silence.
        _stall,
    ],
    ids=["drip-body", "drip-body-no-length", "drip-headers", "stall"],
)
def test_total_deadline_holds_against_slow_servers(serve: Callable[..., RawServer], handler: Handler) -> None:
    server = serve(handler)
    started = time.monotonic()
    error = _fails(server.url(), "timeout", deadline_s=1.0)
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 3.0
    assert "within 1 s" in str(error)


# --- malformed and oversized answers ---------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"garbage\r\n\r\n", "unreachable"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "unreachable"),
        (b"", "unreachable"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "unreachable"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", "unreachable"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "unreachable"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-H: 1\r\n" * 150 + b"\r\n", "unreachable"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "unreachable"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + b"x" * 20000, "too_large"),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 20000, "too_large"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + b"x" * 20000, "ok"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n" + b"x" * 20000, "too_large"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"2710\r\n"
            + b"x" * 10000
            + b"\r\n"
            + b"2710\r\n"
            + b"x" * 10000
            + b"\r\n0\r\n\r\n",
            "too_large",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "ok"),
    ],
    ids=[
        "garbage-status",
        "bad-status-code",
        "empty",
        "bad-chunk-size",
        "truncated-chunk",
        "70kb-header",
        "150-headers",
        "short-body",
        "too-large-declared",
        "too-large-undeclared",
        "extra-bytes-ignored",
        "bad-length",
        "too-large-chunked",
        "chunked-ok",
    ],
)
def test_malformed_or_oversized_answers(serve: Callable[..., RawServer], data: bytes, kind: str) -> None:
    server = serve(raw(data))
    if kind == "ok":
        assert _fetch(server.url()) in (b"x", b"abc")
        return
    error = _fails(server.url(), kind)
    if kind == "unreachable":
        assert "refused" not in str(error).lower()
    else:
        assert "10000-byte limit" in str(error)


def test_connection_reset_is_unreachable(serve: Callable[..., RawServer]) -> None:
    def reset(conn: socket.socket, head: bytes, server: RawServer) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    server = serve(reset)
    _fails(server.url(), "unreachable")


def test_closed_port_is_unreachable_without_saying_why() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = _fails(f"http://127.0.0.1:{port}/x.png", "unreachable")
    assert "refused" not in str(error).lower()


# --- proxies ---------------------------------------------------------------------


def test_proxy_environment_variables_are_ignored(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # discard port: nothing answers
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server = serve(answer())
    assert _fetch(server.url()) == PNG


def test_explicit_http_proxy_gets_the_checked_address(serve: Callable[..., RawServer]) -> None:
    target = serve(answer())
    proxy = serve(answer(body=b"via proxy"))
    policy = AddressPolicy(allow_private=True, proxy=f"127.0.0.1:{proxy.port}")
    assert _fetch(target.url(host="localhost"), policy) == b"via proxy"
    head = proxy.requests[0]
    assert _path(head) in (f"http://127.0.0.1:{target.port}/img.png", f"http://[::1]:{target.port}/img.png")
    assert _header(head, "Host") == f"localhost:{target.port}"
    assert target.accepted == 0


def test_explicit_proxy_does_not_bypass_the_policy(serve: Callable[..., RawServer]) -> None:
    proxy = serve(answer())
    _fails("http://127.0.0.1:8080/x.png", "refused", AddressPolicy(proxy=f"127.0.0.1:{proxy.port}"))
    assert proxy.accepted == 0


# --- TLS -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context with a cert for "localhost" only, client context trusting its CA)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "productlens test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder: Path = tmp_path_factory.mktemp("tls")
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(folder / "leaf.pem", folder / "key.pem")
    client_ctx = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    return server_ctx, client_ctx


@pytest.fixture
def tls_server(
    serve: Callable[..., RawServer],
    tls_material: tuple[ssl.SSLContext, ssl.SSLContext],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[RawServer, list[str | None]]:
    server_ctx, client_ctx = tls_material
    monkeypatch.setattr(http_fetch, "_tls_context", lambda: client_ctx)
    names: list[str | None] = []
    server_ctx.sni_callback = lambda sslobj, name, ctx: names.append(name)  # type: ignore[assignment]
    return serve(answer(), tls=server_ctx), names


def test_https_pins_the_address_and_verifies_the_name(tls_server: tuple[RawServer, list[str | None]]) -> None:
    server, names = tls_server
    assert _fetch(server.url(host="localhost", scheme="https")) == PNG
    assert names == ["localhost"]  # SNI is the URL's host, not the address connected to


def test_https_certificate_for_another_name_is_unreachable(tls_server: tuple[RawServer, list[str | None]]) -> None:
    server, _ = tls_server
    error = _fails(server.url(host="127.0.0.1", scheme="https"), "unreachable")
    assert "TLS certificate" in str(error)


def test_https_through_a_connect_proxy(
    serve: Callable[..., RawServer], tls_server: tuple[RawServer, list[str | None]]
) -> None:
    target, names = tls_server
    tunnels: list[str] = []

    def relay(conn: socket.socket, head: bytes, server: RawServer) -> None:
        line = head.split(b"\r\n", 1)[0].decode()
        tunnels.append(line)
        authority = line.split()[1]
        host, _, port = authority.rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5) as upstream:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

            def pump(src: socket.socket, dst: socket.socket) -> None:
                try:
                    while data := src.recv(65536):
                        dst.sendall(data)
                except OSError:
                    pass
                finally:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass

            back = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
            back.start()
            pump(conn, upstream)
            back.join(5)

    proxy = serve(relay)
    policy = AddressPolicy(allow_private=True, proxy=f"127.0.0.1:{proxy.port}")
    assert _fetch(target.url(host="localhost", scheme="https"), policy) == PNG
    assert tunnels[0] in (f"CONNECT 127.0.0.1:{target.port} HTTP/1.1", f"CONNECT [::1]:{target.port} HTTP/1.1")
    assert names == ["localhost"]


# --- the error type itself -------------------------------------------------------


def test_fetch_error_pickles_and_checks_its_kind() -> None:
    error = pickle.loads(pickle.dumps(FetchError("too_large", "image x is too large")))
    assert (error.kind, str(error)) == ("too_large", "image x is too large")
    with pytest.raises(ValueError):
        FetchError("bogus", "x")


def test_invalid_arguments_are_caller_bugs() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        fetch_http("http://example.com/", policy=LOCAL, max_bytes=0, deadline_s=1)
    with pytest.raises(ValueError, match="deadline_s"):
        fetch_http("http://example.com/", policy=LOCAL, max_bytes=1, deadline_s=float("nan"))
    with pytest.raises(TypeError):
        fetch_http("http://example.com/", policy=None, max_bytes=1, deadline_s=1)  # type: ignore[arg-type]


def test_no_time_left_is_a_timeout_not_a_bug(serve: Callable[..., RawServer]) -> None:
    server = serve(answer())
    for left in (0, -0.5):
        _fails(server.url(), "timeout", deadline_s=left)
    assert server.accepted == 0
