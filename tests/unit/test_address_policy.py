"""The SSRF address policy: strict URL parsing, public-address checks, bounded DNS.

No test here opens a connection: refusals must happen before any packet is sent.
"""

from __future__ import annotations

import ipaddress
import pickle
import socket
import time

import pytest

from transforms.images import address_policy
from transforms.images.address_policy import (
    AddressPolicy,
    AddressRefused,
    HostUnresolvable,
    is_public_address,
    parse_image_url,
    resolve_checked,
)

PORT = 8080  # never connected to: every URL below must be refused before that


def _check(url: str, policy: AddressPolicy | None = None) -> list:
    parts = parse_image_url(url)
    assert parts.hostname is not None
    return resolve_checked(parts.hostname, parts.port or 80, policy or AddressPolicy())


@pytest.mark.parametrize(
    "url",
    [
        f"http://127.0.0.1:{PORT}/",
        f"http://localhost:{PORT}/",
        f"http://0x7f000001:{PORT}/",
        f"http://2130706433:{PORT}/",
        f"http://127.1:{PORT}/",
        f"http://0177.0.0.1:{PORT}/",
        f"http://[::1]:{PORT}/",
        f"http://[::ffff:127.0.0.1]:{PORT}/",
        f"http://[::ffff:7f00:1]:{PORT}/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
        "http://0/",
        "http://255.255.255.255/",
        "http://[fc00::1]/",
        "http://[fe80::1]/",
        "http://[::]/",
        "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://[ff02::1]/",
    ],
)
def test_non_public_targets_are_refused_by_default(url: str) -> None:
    with pytest.raises(AddressRefused) as info:
        _check(url)
    # Generic reason: it must not say what the host resolved to or why exactly.
    message = str(info.value)
    assert "hosts that resolve to public addresses" in message
    assert "127.0.0.1" not in message or "127.0.0.1" in url


@pytest.mark.parametrize("host", ["0x7f000001", "2130706433", "127.1", "0177.0.0.1", "127.0.0.1", "::ffff:127.0.0.1"])
def test_numeric_encodings_are_checked_as_the_address_they_denote(host: str) -> None:
    # With loopback allowed, what comes back is the address connect() will use: the
    # legacy encodings are decoded like inet_aton does, not passed through as names.
    resolved = resolve_checked(host, 8080, AddressPolicy(allow_private=True))
    assert [ipaddress.ip_address(sockaddr[0]) for _, sockaddr in resolved] in (
        [ipaddress.ip_address("127.0.0.1")],
        [ipaddress.ip_address("::ffff:127.0.0.1")],
    )


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"],
)
def test_public_addresses_are_public(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is True


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.254",
        "224.0.0.1",
        "239.255.255.250",
        "0.0.0.0",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",
        "198.18.0.1",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::1",
        "2002:a00:1::",
        "2001::1",
        "2001:db8::1",
    ],
)
def test_non_public_addresses_are_not_public(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is False


def test_nat64_and_6to4_of_a_public_address_are_public() -> None:
    assert is_public_address(ipaddress.ip_address("64:ff9b::5db8:d822")) is True  # 93.184.216.34
    assert is_public_address(ipaddress.ip_address("2002:5db8:d822::1")) is True


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://h:abc/",
        "http://h:+80/",
        "http://h:99999/",
        "http://h:0/",
        "http://a b/",
        "http://x/\n",
        "http://x/\x00",
        "http://x/\t",
        "\x01http://x/",
        "http://x/\u2028",
        "http://x/\u202e",
        "ftp://x/y",
        "file:///etc/passwd",
        "gopher://",
        "gopher://x:70/_",
        "javascript:alert(1)",
        "http://user:pw@host/",
        "http://user@host/",
        "http://evil.example\\@127.0.0.1/",
        "http://127.0.0.1\\.evil.example/",
        "http://%31%32%37.0.0.1/",
        "http://[v1.x]/",
        "http://[fe80::1%25eth0]/",
        "http://",
        "http:///path",
        "http://:80/",
        "http://a..b/",
        "http://-a.example/",
        "http://" + "a" * 64 + ".example/",
        "http://example.com/" + "a" * 2048,
        "",
        "//example.com/x",
        "example.com/x",
    ],
)
def test_malformed_urls_are_refused_and_nothing_else(url: str) -> None:
    with pytest.raises(AddressRefused) as info:
        parse_image_url(url)
    shown = str(info.value)
    assert len(shown) < 400  # a 2 KB URL is truncated in the message
    assert "\n" not in shown and "\x00" not in shown


@pytest.mark.parametrize("value", [None, b"http://x/", 42])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(AddressRefused):
        parse_image_url(value)  # type: ignore[arg-type]


def test_parse_normalises_the_host() -> None:
    parts = parse_image_url("HTTPS://Bücher.Example:8443/Straße?x=1#frag")
    assert parts.scheme == "https"
    assert parts.hostname == "xn--bcher-kva.example"
    assert parts.port == 8443
    assert parts.path == "/Straße"
    v6 = parse_image_url("http://[2606:2800:220:1::1]/a.png")
    assert v6.hostname == "2606:2800:220:1::1"
    assert v6.port is None
    assert parse_image_url("http://cdn.example.com:/a.png").port is None


def test_policy_validation_says_what_to_do() -> None:
    with pytest.raises(TypeError, match=r"tuple of host names"):
        AddressPolicy(allowed_hosts="cdn.example.com")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'\.example\.com'"):
        AddressPolicy(allowed_hosts=("*.example.com",))
    with pytest.raises(ValueError, match="no scheme, port or path"):
        AddressPolicy(allowed_hosts=("https://cdn.example.com",))
    with pytest.raises(ValueError, match="max_redirects"):
        AddressPolicy(max_redirects=-1)
    with pytest.raises(ValueError, match="dns_timeout_s"):
        AddressPolicy(dns_timeout_s=0)
    with pytest.raises(ValueError, match="host:port"):
        AddressPolicy(proxy="http://proxy.internal:3128")
    with pytest.raises(ValueError, match="host:port"):
        AddressPolicy(proxy="proxy.internal:abc")
    with pytest.raises(TypeError):
        AddressPolicy(allow_private="yes")  # type: ignore[arg-type]
    policy = AddressPolicy(allowed_hosts=["CDN.Example.com.", "[0:0::1]"], proxy="[::1]:3128")  # type: ignore[arg-type]
    assert policy.allowed_hosts == ("cdn.example.com", "::1")
    assert pickle.loads(pickle.dumps(policy)) == policy  # Beam ships it to workers


def test_allowed_hosts_matching() -> None:
    policy = AddressPolicy(allowed_hosts=("cdn.shop.example", ".images.example"))
    assert policy.host_allowed("cdn.shop.example")
    assert policy.host_allowed("cdn.shop.example.")
    assert policy.host_allowed("a.images.example")
    assert policy.host_allowed("a.b.images.example")
    assert not policy.host_allowed("images.example")  # a suffix entry means subdomains only
    assert not policy.host_allowed("evilimages.example")
    assert not policy.host_allowed("x.cdn.shop.example")
    assert AddressPolicy().host_allowed("anything.example")


def test_allow_list_miss_is_refused_before_any_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> list:
        raise AssertionError("an allow-list miss must not cause a DNS lookup")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(AddressRefused):
        resolve_checked("evil.example", 80, AddressPolicy(allowed_hosts=("cdn.example",)))


def test_allow_private_never_opens_metadata_or_multicast() -> None:
    policy = AddressPolicy(allow_private=True)
    for host in ("169.254.169.254", "fe80::1", "224.0.0.1", "0.0.0.0", "::", "ff02::1"):
        with pytest.raises(AddressRefused):
            resolve_checked(host, 80, policy)
    for host in ("127.0.0.1", "10.0.0.1", "192.168.1.1", "100.64.0.1", "fd00::1", "::1"):
        assert resolve_checked(host, 80, policy)


def _fake_answers(*addresses: str):
    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list:
        answers = []
        for address in addresses:
            if ":" in address:
                answers.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                answers.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return answers

    return getaddrinfo


def test_every_resolved_address_must_be_public(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fake_answers("93.184.216.34", "10.0.0.1"))
    with pytest.raises(AddressRefused) as info:
        resolve_checked("mixed.example", 80, AddressPolicy())
    assert "10.0.0.1" not in str(info.value)  # never say what an internal name resolved to

    monkeypatch.setattr(socket, "getaddrinfo", _fake_answers("93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"))
    resolved = resolve_checked("cdn.example", 443, AddressPolicy())
    assert resolved == [
        (socket.AF_INET, ("93.184.216.34", 443)),
        (socket.AF_INET6, ("2606:2800:220:1::1", 443, 0, 0)),
    ]


def test_resolver_failure_is_host_unresolvable(monkeypatch: pytest.MonkeyPatch) -> None:
    def nxdomain(*args: object, **kwargs: object) -> list:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nxdomain)
    with pytest.raises(HostUnresolvable) as info:
        resolve_checked("nowhere.example", 80, AddressPolicy())
    assert info.value.timed_out is False
    assert isinstance(info.value, AddressRefused)  # callers catching AddressRefused are covered


def test_dns_lookup_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    def hung(*args: object, **kwargs: object) -> list:
        time.sleep(5)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", hung)
    policy = AddressPolicy(dns_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(AddressRefused) as info:
        resolve_checked("slow.example", 80, policy)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert isinstance(info.value, HostUnresolvable) and info.value.timed_out
    # A caller's own, shorter, remaining deadline wins over the policy's bound.
    started = time.monotonic()
    with pytest.raises(HostUnresolvable):
        resolve_checked("slow.example", 80, AddressPolicy(dns_timeout_s=5), timeout_s=0.2)
    assert time.monotonic() - started < 1.5


def test_scoped_link_local_answers_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fake_answers("fe80::1%lo"))
    with pytest.raises(AddressRefused):
        resolve_checked("scoped.example", 80, AddressPolicy(allow_private=True))


def test_refusal_messages_truncate_long_urls() -> None:
    url = "http://127.0.0.1/" + "a" * 1500
    with pytest.raises(AddressRefused) as info:
        _check(url)
    assert len(str(info.value)) < 300
    assert address_policy.echo_url("x\ny") == "x\N{REPLACEMENT CHARACTER}y"
