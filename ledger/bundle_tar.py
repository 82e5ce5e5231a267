"""A bundle directory as one tar stream, and back (``GET /log/bundle``, ``reserve audit
fetch``; issue #10).

The stream is a plain POSIX (pax) tar of ``bundle/<file>`` members, written file by file
in 64 KiB blocks, so the service never holds a bundle in memory and ``curl ... | tar x``
works. Extraction takes only regular files directly under ``bundle/`` with safe names,
and refuses everything else (links, devices, paths that climb out, duplicates).
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ledger.errors import ConfigError, VerificationFailed

PREFIX = "bundle"
_BLOCK = 512
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_MEMBERS = 64


def tar_stream(root: Path) -> Iterator[bytes]:
    """The files of bundle directory ``root`` as a tar stream, in sorted order."""
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        st = path.stat()
        info = tarfile.TarInfo(f"{PREFIX}/{path.name}")
        info.size = st.st_size
        info.mtime = int(st.st_mtime)
        info.mode = 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        with path.open("rb") as f:
            while block := f.read(1 << 16):
                yield block
        if pad := (-st.st_size) % _BLOCK:
            yield b"\0" * pad
    yield b"\0" * (2 * _BLOCK)


def extract_bundle(stream: IO[bytes], dest: Path) -> list[str]:
    """Unpack a bundle tar read from ``stream`` into the empty or new directory ``dest``;
    return the file names."""
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"{dest} exists and is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                prefix, _, name = member.name.partition("/")
                if (
                    prefix != PREFIX
                    or not member.isfile()
                    or _NAME.fullmatch(name) is None
                    or name in names
                    or len(names) >= MAX_MEMBERS
                ):
                    raise VerificationFailed(f"the bundle archive holds an unexpected member {member.name[:80]!r}")
                src = tar.extractfile(member)
                assert src is not None
                with (dest / name).open("xb") as out:
                    while block := src.read(1 << 16):
                        out.write(block)
                names.append(name)
    except tarfile.TarError as exc:
        raise VerificationFailed("the bundle archive is not a valid tar stream") from exc
    return names
