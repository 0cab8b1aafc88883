"""A corpus of hostile and unlucky inputs for `productlens backfill` (issue 10).

Each `Case` is one input class: the event line(s) that carry it, and what must come of
it (a dead letter at a stage with one of the expected error types, and whether the
product is still predicted from its text). Cases are grouped into `Scenario`s that share
one job run and its configuration (the default policy, a local image directory, or
loopback servers allowed explicitly, as tests and local use may).

The servers are real loopback sockets started here: an "internal" one that stands for a
service a worker must never reach (it counts every connection), and a "hostile" one that
answers with slow drips, stalls, malformed HTTP, decompression bombs and foreign formats.

Used by `tests/integration/test_hostile_inputs.py` (assertions) and
`benchmarks/hostile.py` (outcome, wall time and peak RSS per input class).
"""

from __future__ import annotations

import io
import json
import os
import random
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


# --------------------------------------------------------------------------- servers


def png_bytes(size: tuple[int, int] = (64, 64), colour: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def image_bombs() -> dict[str, bytes]:
    """Headers that announce 20000x20000 pixels in a few bytes."""
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
        + _png_chunk(b"IEND", b"")
    )
    gif = (
        b"GIF89a"
        + struct.pack("<HH", 20000, 20000)
        + b"\x00\x00\x00"
        + b",\x00\x00\x00\x00"
        + struct.pack("<HH", 20000, 20000)
        + b"\x00\x02\x02D\x01\x00;"
    )
    # A baseline JPEG: SOI, a SOF0 frame header of 20000x20000, then EOI.
    jpeg = b"\xff\xd8" + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 20000, 20000, 1) + b"\x01\x11\x00" + b"\xff\xd9"
    psd = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 20000, 20000, 8, 3) + b"\x00" * 16
    return {"png": png, "gif": gif, "jpeg": jpeg, "psd": psd}


def foreign_formats() -> dict[str, bytes]:
    """Real images in formats outside the allow-list, plus an EPS program."""
    out = {}
    for fmt in ("TIFF", "ICO", "TGA"):
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), "blue").save(buf, format=fmt)
        out[fmt.lower()] = buf.getvalue()
    out["psd"] = image_bombs()["psd"][:26] + b"\x00" * 64  # a small PSD header
    out["eps"] = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n0 0 moveto 32 32 lineto stroke\nshowpage\n%%EOF\n"
    return out


def fuzzed_pngs(count: int = 5, seed: int = 7) -> list[bytes]:
    good = png_bytes((48, 48), "green")
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        data = bytearray(good)
        for _ in range(rng.randint(2, 10)):
            data[rng.randrange(8, len(data))] = rng.randrange(256)
        out.append(bytes(data))
    return out


class _Server:
    """A threaded TCP server on a free loopback port answering raw bytes per path."""

    def __init__(
        self, routes: dict[str, Callable[[socket.socket], None]], default: Callable[[socket.socket], None]
    ) -> None:
        self.routes = routes
        self.default = default
        self.hits: list[str] = []
        self.connections = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            path = data.split(b" ", 2)[1].decode("latin-1") if data.count(b" ") >= 2 else "/"
            self.hits.append(path)
            self.routes.get(path.split("?", 1)[0], self.default)(conn)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def _ok(body: bytes, content_type: str = "image/png") -> Callable[[socket.socket], None]:
    def send(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: "
            + content_type.encode()
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )

    return send


def _raw(answer: bytes) -> Callable[[socket.socket], None]:
    return lambda conn: conn.sendall(answer)


def _redirect(location: str) -> Callable[[socket.socket], None]:
    return _raw(
        f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
    )


def _drip(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(120):  # one byte a second, for two minutes
        conn.sendall(b"\x89")
        time.sleep(1.0)


def _stall(conn: socket.socket) -> None:
    time.sleep(120)  # accept, read the request, never answer


def _drip_headers(conn: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
        conn.sendall(bytes([byte]))
        time.sleep(1.0)


def internal_server() -> _Server:
    """Stands for an internal service or a metadata endpoint: any fetch that reaches it
    would make its answer (a valid image) the product's image."""
    return _Server({}, _ok(png_bytes((64, 64), "purple")))


def hostile_server() -> _Server:
    bombs, formats = image_bombs(), foreign_formats()
    routes: dict[str, Callable[[socket.socket], None]] = {
        "/good.png": _ok(png_bytes((64, 64), "red")),
        "/drip": _drip,
        "/stall": _stall,
        "/drip-headers": _drip_headers,
        "/bad-status": _raw(b"HTTP/1.1 abc definitely-not-a-status\r\n\r\n"),
        "/not-http": _raw(b"\x00\x01\x02garbage\r\n\r\n"),
        "/bad-chunk": _raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz-not-hex\r\nabc\r\n"),
        "/big-header": _raw(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 3\r\n\r\nabc"),
        "/many-headers": _raw(
            b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(500)) + b"Content-Length: 3\r\n\r\nabc"
        ),
        "/lying-length": _raw(b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\nshort"),
        "/huge": _ok(b"\x89PNG" + b"\x00" * (12 * 1024 * 1024)),
        "/404": _raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        **{f"/bomb.{k}": _ok(v, "image/" + k) for k, v in bombs.items()},
        **{f"/format.{k}": _ok(v, "application/octet-stream") for k, v in formats.items()},
        **{f"/fuzzed-{i}.png": _ok(v) for i, v in enumerate(fuzzed_pngs())},
    }
    server = _Server(routes, _raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
    server.routes["/redirect-localhost"] = _redirect(server.url("/good.png", "localhost"))
    server.routes["/redirect-ipv6"] = _redirect(f"http://[::1]:{server.port}/good.png")
    server.routes["/redirect-ftp"] = _redirect("ftp://127.0.0.1/good.png")
    server.routes["/redirect-file"] = _redirect("file:///etc/passwd")
    server.routes["/redirect-loop"] = _redirect(server.url("/redirect-loop"))
    return server


# --------------------------------------------------------------------------- events


def event(pid: str, *, title: str | None = None, raw_product: str | None = None, **product: object) -> bytes:
    """One create event line. `raw_product` splices a pre-serialised product object in
    (for payloads json.dumps cannot express, such as duplicate keys)."""
    body = {
        "event_id": f"e-{pid}",
        "type": "create",
        "product_id": pid,
        "shop_id": "shop-hostile",
        "occurred_at": "2026-11-01T00:00:00Z",
    }
    line = json.dumps(body)
    prod = (
        raw_product
        if raw_product is not None
        else json.dumps({"title": title or f"Red cotton t-shirt {pid}", **product})
    )
    return (line[:-1] + ', "product": ' + prod + "}").encode()


@dataclass(frozen=True)
class Case:
    """One input class: its event lines and the outcome it must have."""

    name: str
    lines: tuple[bytes, ...]
    stage: str  # the stage of its dead letter
    error_types: frozenset[str]  # one of these
    predicted: bool  # whether the product still gets a prediction (from its text)
    description: str = ""

    @property
    def product_id(self) -> str:
        return f"hostile-{self.name}"


@dataclass
class Scenario:
    """Cases that share one job run and its flags."""

    name: str
    cases: list[Case]
    flags: list[str] = field(default_factory=list)
    # Extra input files next to events.jsonl (name -> bytes), for file-level cases.
    files: dict[str, bytes] = field(default_factory=dict)
    # file-level cases: product id -> "predicted" (no dead letter expected for them)
    file_products: dict[str, str] = field(default_factory=dict)


GOOD_IDS = ("good-1", "good-2")


def good_lines() -> list[bytes]:
    return [
        event("good-1", title="Women's red v-neck wrap midi dress", product_type="Dresses", tags=["women", "dress"]),
        event("good-2", title="Leather crossbody bag, black", product_type="Handbags", vendor="Noir"),
    ]


def _image_case(name: str, urls: list[str], error_types: set[str], description: str = "") -> Case:
    pid = f"hostile-{name}"
    return Case(name, (event(pid, image_urls=urls),), "prepare_images", frozenset(error_types), True, description)


REFUSED = {"ImageRefused"}
BAD_URL = {"ImageRefused", "ImageUnsupportedUrl"}
UNREACHABLE = {"ImageUnreachable", "ImageTimeout"}
NOT_IMAGE = {"ImageNotAnImage", "ImageTooLarge"}


def ssrf_scenario(internal: _Server) -> Scenario:
    """Default policy: nothing on loopback, private or link-local addresses is fetched."""
    p = internal.port
    cases = [
        _image_case("loopback-ip", [f"http://127.0.0.1:{p}/a.png"], REFUSED),
        _image_case("localhost", [f"http://localhost:{p}/a.png"], REFUSED),
        _image_case("hex-ip", [f"http://0x7f000001:{p}/a.png"], REFUSED),
        _image_case("decimal-ip", [f"http://2130706433:{p}/a.png"], REFUSED),
        _image_case("short-ip", [f"http://127.1:{p}/a.png"], REFUSED),
        _image_case("octal-ip", [f"http://0177.0.0.1:{p}/a.png"], REFUSED),
        _image_case("ipv6-loopback", [f"http://[::1]:{p}/a.png"], REFUSED),
        _image_case("ipv4-mapped-ipv6", [f"http://[::ffff:127.0.0.1]:{p}/a.png"], REFUSED),
        _image_case("metadata-endpoint", ["http://169.254.169.254/computeMetadata/v1/"], REFUSED),
        _image_case("private-10", ["http://10.0.0.1/a.png"], REFUSED),
        _image_case("private-192", ["https://192.168.1.1/a.png"], REFUSED),
        _image_case("unspecified", [f"http://0.0.0.0:{p}/a.png"], REFUSED),
        _image_case("ftp", [f"ftp://127.0.0.1:{p}/a.png"], BAD_URL),
        _image_case("gs-any-bucket", ["gs://any-bucket/secret.png"], REFUSED),
        _image_case("file-url-no-base", ["file:///etc/passwd"], REFUSED),
        _image_case("local-path-no-base", ["/etc/passwd"], REFUSED),
        _image_case("bad-url-bracket", ["http://[::1"], BAD_URL),
        _image_case("bad-url-port", ["http://example.com:abc/a.png"], BAD_URL),
        _image_case("bad-url-space", ["http://exa mple.com/a.png"], BAD_URL),
        _image_case("bad-url-newline", ["http://example.com/a.png\nHost: evil"], BAD_URL),
        _image_case("bad-url-nul", ["http://example.com/a\x00.png"], BAD_URL),
    ]
    return Scenario("ssrf", cases)


def files_scenario(root: Path) -> Scenario:
    """Local images only under --image-base-dir, regular files, bounded, non-blocking."""
    base = root / "images"
    base.mkdir(parents=True, exist_ok=True)
    (base / "good.png").write_bytes(png_bytes((64, 64), "red"))
    (root / "foreign.png").write_bytes(png_bytes((64, 64), "purple"))
    (base / "a-directory").mkdir(exist_ok=True)
    fifo = base / "a-fifo.png"
    if not fifo.exists():
        os.mkfifo(fifo)
    (base / "escape.png").unlink(missing_ok=True)
    (base / "escape.png").symlink_to(root / "foreign.png")
    cases = [
        _image_case("etc-passwd", ["/etc/passwd"], REFUSED),
        _image_case("proc-environ", ["/proc/self/environ"], REFUSED),
        _image_case("file-url", ["file:///etc/passwd"], REFUSED),
        _image_case("dot-dot", ["../../../../../../etc/hostname"], REFUSED),
        _image_case("foreign-local-image", [str(root / "foreign.png")], REFUSED),
        _image_case("symlink-out", ["escape.png"], REFUSED),
        _image_case("dev-zero", ["/dev/zero"], REFUSED),
        _image_case("dev-urandom", ["/dev/urandom"], REFUSED),
        _image_case("fifo", ["a-fifo.png"], REFUSED),
        _image_case("directory", ["a-directory"], REFUSED),
        _image_case("nul-byte-path", ["good.png\x00.jpg"], REFUSED),
        _image_case("missing-file", ["missing.png"], UNREACHABLE),
    ]
    good = event("good-local-image", title="Red cotton t-shirt", image_urls=["good.png"])
    return Scenario(
        "files",
        cases,
        flags=["--image-base-dir", str(base)],
        files={"good-image.jsonl": good + b"\n"},
        file_products={"good-local-image": "predicted"},
    )


def http_scenario(hostile: _Server) -> Scenario:
    """Loopback allowed explicitly (tests only) and limited to 127.0.0.1 by the host
    allow-list, so that redirects to other names are refused on their hop."""
    u = hostile.url
    cases = [
        _image_case("slow-drip", [u("/drip")], UNREACHABLE, "one byte a second"),
        _image_case("stalled-headers", [u("/stall")], UNREACHABLE, "accepts, never answers"),
        _image_case("dripped-headers", [u("/drip-headers")], UNREACHABLE, "headers one byte a second"),
        _image_case("bad-status-line", [u("/bad-status")], UNREACHABLE),
        _image_case("not-http", [u("/not-http")], UNREACHABLE),
        _image_case("broken-chunking", [u("/bad-chunk")], UNREACHABLE | NOT_IMAGE),
        _image_case("70kb-header", [u("/big-header")], UNREACHABLE),
        _image_case("500-headers", [u("/many-headers")], UNREACHABLE),
        _image_case("lying-content-length", [u("/lying-length")], UNREACHABLE | {"ImageTooLarge"}),
        _image_case("over-byte-limit", [u("/huge")], {"ImageTooLarge"}),
        _image_case("http-404", [u("/404")], UNREACHABLE),
        _image_case("redirect-to-localhost", [u("/redirect-localhost")], REFUSED),
        _image_case("redirect-to-ipv6-loopback", [u("/redirect-ipv6")], REFUSED),
        _image_case("redirect-to-ftp", [u("/redirect-ftp")], REFUSED | {"ImageUnsupportedUrl"}),
        _image_case("redirect-to-file", [u("/redirect-file")], REFUSED | {"ImageUnsupportedUrl"}),
        _image_case("redirect-loop", [u("/redirect-loop")], REFUSED | UNREACHABLE),
        *(_image_case(f"bomb-{k}", [u(f"/bomb.{k}")], NOT_IMAGE) for k in image_bombs()),
        *(_image_case(f"format-{k}", [u(f"/format.{k}")], {"ImageNotAnImage"}) for k in foreign_formats()),
        _image_case("fuzzed-pngs", [u(f"/fuzzed-{i}.png") for i in range(3)], NOT_IMAGE | {"ImagesFailed"}),
    ]
    good = event("good-http-image", title="Red cotton t-shirt", image_urls=[u("/good.png")])
    return Scenario(
        "http",
        cases,
        flags=["--allow-private-image-addresses", "--image-host", "127.0.0.1", "--beam-arg=--image_timeout_s=2"],
        files={"good-image.jsonl": good + b"\n"},
        file_products={"good-http-image": "predicted"},
    )


def _deep_json(levels: int) -> str:
    return "[" * levels + "]" * levels


def payload_scenario(big_line_mb: int = 40) -> Scenario:
    """Oversized, deep and malformed payloads: dead letters at decode, in linear time."""

    def decode_case(name: str, line: bytes, types: set[str], description: str = "") -> Case:
        return Case(name, (line,), "decode", frozenset(types), False, description)

    pid = "hostile-{}".format
    too_big = {"EventTooLarge", "InvalidEvent"}
    cases = [
        decode_case(
            "deep-json",
            event(pid("deep-json"), raw_product='{"title": "x", "tags": ' + _deep_json(2000) + "}"),
            {"TooDeeplyNested"},
            "2,000 levels, 4 KB",
        ),
        decode_case(
            f"{big_line_mb}mb-line",
            event(pid(f"{big_line_mb}mb-line"), description_html="x" * (big_line_mb * 1024 * 1024)),
            {"EventTooLarge"},
        ),
        decode_case(
            "50-image-urls-of-100kb",
            event(pid("50-image-urls-of-100kb"), image_urls=["http://example.com/" + "a" * 100_000 for _ in range(50)]),
            too_big,
        ),
        decode_case(
            "10mb-product-type", event(pid("10mb-product-type"), product_type="t" * (10 * 1024 * 1024)), too_big
        ),
        decode_case("1m-tags", event(pid("1m-tags"), tags=["t"] * 1_000_000), too_big),
        decode_case(
            "100k-option-values",
            event(
                pid("100k-option-values"),
                variant_options=[{"name": "Size", "values": [str(i) for i in range(100_000)]}],
            ),
            too_big,
        ),
        decode_case("300-tags", event(pid("300-tags"), tags=[f"tag{i}" for i in range(300)]), {"InvalidEvent"}),
        decode_case(
            "duplicate-keys",
            event(pid("duplicate-keys"), raw_product='{"title": "Red shirt", "title": "Something else"}'),
            {"DuplicateKey"},
        ),
    ]
    bom = (
        b"\xef\xbb\xbf"
        + event("bom-first", title="Blue denim jeans")
        + b"\n"
        + event("bom-second", title="Green wool scarf")
        + b"\n"
    )
    cr_only = event("cr-first", title="Black leather boots") + b"\r" + event("cr-second", title="Silver ring") + b"\r"
    return Scenario(
        "payloads",
        cases,
        files={"bom.jsonl": bom, "cr-only.jsonl": cr_only},
        file_products={
            "bom-first": "predicted",
            "bom-second": "predicted",
            "cr-first": "predicted",
            "cr-second": "predicted",
        },
    )


def write_inputs(scenario: Scenario, directory: Path) -> Path:
    """events.jsonl (good products + every case) and the scenario's extra files; returns
    the glob the job reads."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "events.jsonl", "wb") as fh:
        for line in good_lines():
            fh.write(line + b"\n")
        for case in scenario.cases:
            for line in case.lines:
                fh.write(line + b"\n")
    for name, data in scenario.files.items():
        (directory / name).write_bytes(data)
    return directory / "*.jsonl"


def backfill_argv(scenario: Scenario, pattern: Path, out: Path) -> list[str]:
    return ["backfill", "--input", str(pattern), "--output", str(out), *scenario.flags]


@dataclass
class Outcome:
    """What a job made of one case."""

    case: str
    ok: bool
    stages: list[str]
    error_types: list[str]
    predicted: bool
    problem: str = ""


def judge(scenario: Scenario, out: Path) -> tuple[list[Outcome], list[str]]:
    """Compare a job's outputs with the expectations: (one outcome per case, problems
    with the good products)."""
    predictions = {}
    for line in (out / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        predictions[row["product_id"]] = row
    letters: dict[str | None, list[dict]] = {}
    for line in (out / "dead_letters.jsonl").read_text().splitlines():
        row = json.loads(line)
        letters.setdefault(row.get("product_id"), []).append(row)
    outcomes = []
    for case in scenario.cases:
        mine = letters.get(case.product_id, [])
        if not mine and case.stage == "decode":
            # An event refused before it was parsed has no product id: find it by payload.
            mine = [d for d in letters.get(None, []) if case.product_id in d["original_payload"][:4096]]
        stages = [d["stage"] for d in mine]
        types = [d["error_type"] for d in mine]
        predicted = case.product_id in predictions
        problems = []
        if len(mine) != 1:
            problems.append(f"{len(mine)} dead letters (expected one)")
        elif stages[0] != case.stage or types[0] not in case.error_types:
            problems.append(f"dead letter {stages[0]}/{types[0]} (expected {case.stage}/{sorted(case.error_types)})")
        if predicted != case.predicted:
            problems.append("predicted" if predicted else "not predicted")
        outcomes.append(Outcome(case.name, not problems, stages, types, predicted, "; ".join(problems)))
    good_problems = []
    for pid in (*GOOD_IDS, *scenario.file_products):
        if pid not in predictions:
            good_problems.append(f"good product {pid} was not predicted")
        elif letters.get(pid):
            good_problems.append(f"good product {pid} has dead letters: {[d['error_type'] for d in letters[pid]]}")
    return outcomes, good_problems


# --------------------------------------------------------------------------- running


@dataclass
class JobRun:
    returncode: int
    seconds: float
    peak_rss_mb: float
    stderr: str


def run_cli(argv: list[str], timeout_s: float = 600, cwd: Path | None = None) -> JobRun:
    """`productlens ARGV` in a child process, with its own wall time and peak RSS (from
    wait4, so other children of this process do not count)."""
    import signal
    import subprocess
    import sys

    stderr_path = (
        Path(os.environ.get("TMPDIR", "/tmp")) / f"productlens-hostile-{os.getpid()}-{time.monotonic_ns()}.log"
    )
    start = time.perf_counter()
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from pipelines.cli import main; main()", *argv],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=cwd or EXAMPLES.parent,
            start_new_session=True,
        )
        timer = threading.Timer(timeout_s, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    text = stderr_path.read_text(errors="replace")
    stderr_path.unlink(missing_ok=True)
    return JobRun(proc.returncode, seconds, usage.ru_maxrss / 1024, text)
