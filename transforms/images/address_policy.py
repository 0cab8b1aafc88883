"""Which image URLs productlens may fetch, decided before any byte goes on the wire.

Threat model: image URLs come from merchants, so they are untrusted. A URL that points
at (or redirects to, or resolves to) loopback, a private network, the cloud metadata
server (169.254.169.254) or any other non-public address would let a merchant use our
workers to reach internal services (SSRF) and, through our error messages, to scan them.

So every URL is parsed strictly (:func:`parse_image_url`), its host is resolved once with
a bounded DNS lookup, and *every* address it resolves to must be public
(:func:`resolve_checked`). The fetcher then connects to exactly those checked addresses,
never resolving the name again, which closes the DNS-rebinding gap between check and use.
Numeric hosts in legacy encodings ("0x7f000001", "2130706433", "127.1", "0177.0.0.1") are
decoded the way the C library decodes them, so the address checked is the address used.

Refusals raise :class:`AddressRefused` whose message is deliberately generic: it never
says which internal address a name resolved to, or why exactly an address was refused,
so the message cannot serve as a scanning oracle.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import unicodedata
import urllib.parse
from dataclasses import dataclass

__all__ = [
    "MAX_URL_CHARS",
    "echo_url",
    "AddressRefused",
    "HostUnresolvable",
    "AddressPolicy",
    "proxy_host_port",
    "unsafe_url_chars",
    "parse_image_url",
    "is_public_address",
    "getaddrinfo_bounded",
    "resolve_checked",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (family, sockaddr) as getaddrinfo returns them: sockaddr is (host, port) for IPv4 and
# (host, port, flowinfo, scope_id) for IPv6.
Resolved = tuple[socket.AddressFamily, tuple]

MAX_URL_CHARS = 2048
# Long enough for any real URL, short enough that an echoed URL cannot flood a dead letter.
_ECHO_CHARS = 200
# Hung resolver calls cannot be cancelled, only abandoned; bound how many threads a burst
# of hostile hostnames can pin at once.
_MAX_CONCURRENT_LOOKUPS = 32
_lookup_slots = threading.BoundedSemaphore(_MAX_CONCURRENT_LOOKUPS)

_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
# Characters inet_aton accepts in the numeric forms (decimal, octal, hex, 1-4 parts).
_NUMERIC_V4 = re.compile(r"[0-9a-fx.]+")

# Not covered (or not covered on every Python version) by ipaddress's is_global.
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix, RFC 6052
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use NAT64, RFC 8215
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d
_TEREDO = ipaddress.IPv6Network("2001::/32")
# What allow_private opens up (besides loopback): RFC 1918, CGNAT and unique-local.
_LOCAL_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
    _CGNAT,
    ipaddress.IPv6Network("fc00::/7"),
)


def echo_url(url: object) -> str:
    """The URL as it may appear in a message: printable and at most ~200 characters."""
    text = repr(url) if not isinstance(url, str) else url
    # Control characters in an echoed URL could forge log lines or break JSON consumers.
    text = "".join(ch if ch.isprintable() else "\N{REPLACEMENT CHARACTER}" for ch in text)
    return text if len(text) <= _ECHO_CHARS else text[:_ECHO_CHARS] + "…"


class AddressRefused(Exception):
    """A URL or address the policy refuses. ``str()`` is a generic, merchant-facing reason."""


class HostUnresolvable(AddressRefused):
    """The host did not resolve (or not within the DNS bound).

    A subclass of AddressRefused so a caller that only catches AddressRefused still never
    sees a raw resolver error; a fetcher can tell it apart and report "unreachable" /
    "timeout" instead of "refused".
    """

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def _refused(url: object) -> AddressRefused:
    return AddressRefused(
        f"image URL {echo_url(url)} is not allowed: only http(s) hosts that resolve to public addresses are fetched"
    )


@dataclass(frozen=True)
class AddressPolicy:
    """Where image fetching may go. The defaults are the production policy."""

    # Tests and laptops only: also allows loopback, RFC 1918, unique-local and CGNAT
    # targets. Link-local (the metadata server), multicast, unspecified and reserved
    # addresses stay refused even then, since nothing legitimate serves images there.
    allow_private: bool = False
    # Optional allow-list of image hosts (CDNs). Empty means any public host.
    # "cdn.example.com" matches that host exactly; ".example.com" matches any subdomain
    # of example.com (but not example.com itself).
    allowed_hosts: tuple[str, ...] = ()
    max_redirects: int = 3
    dns_timeout_s: float = 2.0
    # Explicit HTTP proxy "host:port". Proxy environment variables (HTTP_PROXY, ...) are
    # always ignored: a proxy is infrastructure config, not something a worker's
    # environment should silently change.
    proxy: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.allow_private, bool):
            raise TypeError(f"AddressPolicy.allow_private must be True or False, got {self.allow_private!r}")
        hosts = self.allowed_hosts
        if isinstance(hosts, str):
            # A bare string would otherwise be iterated character by character.
            raise TypeError(
                f"AddressPolicy.allowed_hosts must be a tuple of host names, e.g. ({hosts!r},), not a string"
            )
        normalised = tuple(_normalise_allowed_host(entry) for entry in hosts)
        object.__setattr__(self, "allowed_hosts", normalised)  # frozen: normalise once, here
        if (
            isinstance(self.max_redirects, bool)
            or not isinstance(self.max_redirects, int)
            or not 0 <= self.max_redirects <= 20
        ):
            raise ValueError(
                f"AddressPolicy.max_redirects must be an integer from 0 to 20, got {self.max_redirects!r}; "
                "image hosts rarely need more than 3"
            )
        if (
            isinstance(self.dns_timeout_s, bool)
            or not isinstance(self.dns_timeout_s, (int, float))
            or not 0 < self.dns_timeout_s <= 60
        ):
            raise ValueError(
                f"AddressPolicy.dns_timeout_s must be a number of seconds in (0, 60], got {self.dns_timeout_s!r}"
            )
        if self.proxy is not None:
            proxy_host_port(self.proxy)  # raises with a message saying the expected form

    def host_allowed(self, host: str) -> bool:
        """Whether `host` (already lower-case, without brackets) passes the allow-list."""
        if not self.allowed_hosts:
            return True
        host = host.rstrip(".")
        for entry in self.allowed_hosts:
            if entry.startswith("."):
                if host.endswith(entry) and len(host) > len(entry):
                    return True
            elif host == entry:
                return True
        return False


def _normalise_allowed_host(entry: object) -> str:
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError(f"AddressPolicy.allowed_hosts entries must be non-empty host names, got {entry!r}")
    text = entry.strip().lower().rstrip(".")
    if text.startswith("*."):
        raise ValueError(f"AddressPolicy.allowed_hosts entry {entry!r}: write {text[1:]!r} to match any subdomain")
    if "/" in text or "@" in text or (":" in text and not _is_ip_literal(text.strip("[]"))):
        raise ValueError(
            f"AddressPolicy.allowed_hosts entry {entry!r} must be a bare host name such as 'cdn.example.com' "
            "(no scheme, port or path)"
        )
    text = text.strip("[]")
    if text in ("", "."):
        raise ValueError(f"AddressPolicy.allowed_hosts entry {entry!r} names no host")
    if _is_ip_literal(text):
        text = str(ipaddress.ip_address(text))  # the same spelling parse_image_url produces
    return text


def _is_ip_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def proxy_host_port(proxy: str) -> tuple[str, int]:
    """Split an explicit proxy setting "host:port" (IPv6 as "[::1]:3128")."""
    hint = "set AddressPolicy.proxy to 'host:port', e.g. 'proxy.internal:3128', or None for no proxy"
    if not isinstance(proxy, str) or "://" in proxy or "/" in proxy or "@" in proxy:
        raise ValueError(f"AddressPolicy.proxy {proxy!r} is not host:port; {hint}")
    host, sep, port_text = proxy.rpartition(":")
    if not sep or not host or not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError(f"AddressPolicy.proxy {proxy!r} is not host:port; {hint}")
    if host.startswith("["):
        if not host.endswith("]") or not _is_ip_literal(host[1:-1]):
            raise ValueError(f"AddressPolicy.proxy {proxy!r} has a malformed IPv6 address; {hint}")
        host = host[1:-1]
    elif ":" in host or any(ch.isspace() or not ch.isprintable() for ch in host):
        raise ValueError(f"AddressPolicy.proxy {proxy!r} is not host:port; {hint}")
    return host, int(port_text)


def _bad_char(ch: str) -> bool:
    code = ord(ch)
    if code <= 0x20 or code == 0x7F or ch == "\\":
        # urlsplit silently drops tab/CR/LF and strips leading C0 controls, and browsers
        # read "\" as "/": refusing them keeps our parse and every other parser in step.
        return True
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def unsafe_url_chars(text: str) -> bool:
    """Whether `text` holds characters no image URL may contain (controls, whitespace, "\\")."""
    return any(_bad_char(ch) for ch in text)


def parse_image_url(url: str) -> urllib.parse.SplitResult:
    """Strictly parse an image URL: http/https, a real host, optional numeric port.

    The result has its host normalised to lower-case ASCII (IDNA for non-ASCII names), so
    ``result.hostname`` is what gets resolved and sent as Host/SNI. Raises AddressRefused.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        raise _refused(url)
    if unsafe_url_chars(url):
        raise _refused(url)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:  # e.g. unbalanced "[::1"
        raise _refused(url) from exc
    if parts.scheme not in ("http", "https"):
        raise _refused(url)
    netloc = parts.netloc
    if not netloc or "@" in netloc:  # userinfo: credentials in URLs, and a classic parser-confusion trick
        raise _refused(url)

    if netloc.startswith("["):
        host_text, bracket, rest = netloc[1:].partition("]")
        if not bracket or "%" in host_text:
            raise _refused(url)
        try:
            # Zone ids ("%25eth0") and IPvFuture are refused: only plain IPv6 literals.
            host = str(ipaddress.IPv6Address(host_text))
        except ValueError as exc:
            raise _refused(url) from exc
        host_netloc = f"[{host}]"
    else:
        host_text, colon, port_part = netloc.partition(":")
        rest = colon + port_part
        host = _normalise_hostname(host_text, url)
        host_netloc = host
    if rest:
        port_text = rest[1:] if rest.startswith(":") else None
        if port_text is None or (port_text and (not port_text.isascii() or not port_text.isdigit())):
            raise _refused(url)
        if port_text:
            port = int(port_text)
            if not 0 < port <= 65535:
                raise _refused(url)
            host_netloc = f"{host_netloc}:{port}"
    return parts._replace(netloc=host_netloc)


def _normalise_hostname(text: str, url: str) -> str:
    if not text:
        raise _refused(url)
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise _refused(url) from exc
    host = text.lower()
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(len(label) <= 63 and _HOST_LABEL.fullmatch(label) for label in labels):
        # Anything but letters, digits, "-", "_" and dots ("%", quotes, ...) is refused
        # rather than handed to a resolver that might interpret it.
        raise _refused(url)
    return host


def is_public_address(ip: IPAddress) -> bool:
    """Whether `ip` is a globally routable unicast address we may connect to.

    IPv6 addresses that embed an IPv4 address (IPv4-mapped, 6to4, NAT64) are judged by
    the embedded address too, since the packet may end up there.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        if ip in _IPV4_COMPATIBLE or ip in _NAT64_LOCAL or ip in _TEREDO or ip.is_site_local:
            return False
    elif ip in _CGNAT:
        return False
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_link_local or ip.is_loopback or ip.is_private:
        return False
    return ip.is_global


def _allowed_when_private(ip: IPAddress) -> bool:
    """allow_private relaxes only loopback/private/CGNAT, never metadata or multicast."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or any(ip in net for net in _LOCAL_NETWORKS if net.version == ip.version)


def _address_allowed(ip: IPAddress, policy: AddressPolicy) -> bool:
    if is_public_address(ip):
        return True
    return policy.allow_private and _allowed_when_private(ip)


def _numeric_host(host: str) -> IPAddress | None:
    """The address a numeric host denotes, decoded like inet_aton/getaddrinfo do."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_V4.fullmatch(host) and not host.endswith("."):
        try:
            # inet_aton accepts the legacy forms ("127.1", "0x7f000001", "2130706433",
            # "0177.0.0.1"); getaddrinfo and therefore connect() decode them the same way.
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def getaddrinfo_bounded(host: str, port: int, timeout_s: float) -> list[Resolved]:
    """getaddrinfo for TCP with a wall-clock bound, deduplicated, IPv4/IPv6 only.

    getaddrinfo cannot be interrupted, so it runs in a daemon thread that is abandoned
    when the bound passes (it ends on its own when the resolver gives up). Raises
    HostUnresolvable; makes no policy decision.
    """
    outcome: list[object] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP))
        except Exception as exc:  # noqa: BLE001 - handed to the waiting thread, which decides
            outcome.append(exc)
        finally:
            _lookup_slots.release()
            done.set()

    if not _lookup_slots.acquire(timeout=max(timeout_s, 0.0)):
        raise HostUnresolvable(f"image host {echo_url(host)} could not be resolved in time", timed_out=True)
    try:
        threading.Thread(target=lookup, name="productlens-dns", daemon=True).start()
    except RuntimeError as exc:  # cannot start a thread (interpreter shutting down, limits)
        _lookup_slots.release()
        raise HostUnresolvable(f"image host {echo_url(host)} could not be resolved") from exc
    if not done.wait(timeout_s):
        raise HostUnresolvable(f"image host {echo_url(host)} could not be resolved in time", timed_out=True)
    result = outcome[0] if outcome else RuntimeError("resolver thread ended without an answer")
    if isinstance(result, BaseException):
        raise HostUnresolvable(f"image host {echo_url(host)} could not be resolved") from result
    seen: set[tuple] = set()
    resolved: list[Resolved] = []
    for family, _type, _proto, _canon, sockaddr in result:  # type: ignore[union-attr]
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        key = (family, sockaddr[0], sockaddr[1])
        if key not in seen:
            seen.add(key)
            resolved.append((family, tuple(sockaddr)))
    if not resolved:
        raise HostUnresolvable(f"image host {echo_url(host)} could not be resolved")
    return resolved


def resolve_checked(host: str, port: int, policy: AddressPolicy, *, timeout_s: float | None = None) -> list[Resolved]:
    """Resolve `host` and return its (family, sockaddr) pairs, all allowed by `policy`.

    `timeout_s` (default policy.dns_timeout_s) lets a caller shrink the DNS bound to its
    own remaining deadline. Raises AddressRefused (HostUnresolvable when the name does
    not resolve). One refused address refuses the host: a name that mixes public and
    private answers is a rebinding trick, not a CDN.
    """
    refused = AddressRefused(
        f"image host {echo_url(host)} is not allowed: only http(s) hosts that resolve to public addresses are fetched"
    )
    if not isinstance(host, str) or not host:
        raise refused
    name = host.strip("[]").lower()
    if not policy.host_allowed(name):
        raise refused  # before DNS: an allow-list miss should not even cause a lookup
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
        raise refused
    bound = policy.dns_timeout_s if timeout_s is None else min(timeout_s, policy.dns_timeout_s)

    numeric = _numeric_host(name)
    if numeric is not None:
        if not _address_allowed(numeric, policy):
            raise refused
        if isinstance(numeric, ipaddress.IPv4Address):
            return [(socket.AF_INET, (str(numeric), port))]
        return [(socket.AF_INET6, (str(numeric), port, 0, 0))]

    resolved = getaddrinfo_bounded(name, port, bound)
    for _family, sockaddr in resolved:
        try:
            ip = ipaddress.ip_address(sockaddr[0])
        except ValueError:  # a scoped "fe80::1%eth0" or something stranger: never public
            raise refused from None
        if not _address_allowed(ip, policy):
            raise refused
    return resolved
