"""Shared plumbing for the atheris fuzz targets in this folder (not a test module).

A target script calls `fuzz(test_one_input, seeds, dictionary)`. Its seeds are written
into the first corpus directory on the command line, or, with none, into a per-target
directory under the system temp dir that later runs reuse: libFuzzer ends the process with
exit() and atheris does not run Python's atexit handlers, so a fresh directory per run
could not be cleaned up, and a kept corpus makes the next run start where this one ended.
Seed files are content-addressed, so adding them again adds nothing. A libFuzzer
dictionary of the format's tokens is passed unless `-dict=` is given: JSON keys and HTML
constructs are hard for byte mutations to guess.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

import atheris

REPO = Path(__file__).resolve().parents[2]


def ensure_repo_on_path() -> None:
    """Scripts run as `python tests/fuzz/x.py`: sys.path[0] is this folder, not the repo."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def _write_seeds(corpus: Path, seeds: Iterable[bytes]) -> int:
    n = 0
    for seed in seeds:
        # Content-addressed names: re-running into a kept corpus adds nothing twice.
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)
        n += 1
    return n


def _dict_entry(token: bytes) -> str:
    # libFuzzer dictionary syntax: a quoted string, with \\, \" and \xNN escapes.
    body = "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02X}" for b in token)
    return f'"{body}"'


def fuzz(test_one_input: Callable[[bytes], None], seeds: Iterable[bytes], dictionary: Iterable[bytes] = ()) -> NoReturn:
    argv = list(sys.argv)
    name = Path(argv[0]).stem
    work = Path(tempfile.gettempdir()) / "productlens-fuzz" / name
    positional = [a for a in argv[1:] if not a.startswith("-")]
    corpus: Path | None
    if not positional:
        corpus = work / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        argv.append(str(corpus))
    else:
        first = Path(positional[0])
        corpus = first if first.is_dir() else None  # a file argument means "reproduce it"
    if corpus is not None:
        count = _write_seeds(corpus, seeds)
        print(f"fuzz harness: {count} seeds in {corpus}", file=sys.stderr)
    tokens = list(dictionary)
    if tokens and not any(a.startswith("-dict=") for a in argv):
        work.mkdir(parents=True, exist_ok=True)
        dict_path = work / "tokens.dict"
        dict_path.write_text("\n".join(_dict_entry(t) for t in tokens) + "\n")
        argv.insert(1, f"-dict={dict_path}")
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
    raise SystemExit(0)  # not reached: libFuzzer exits the process
