"""The bundle over the API (issue #10): ``GET /log/bundle`` streams what ``reserve
export`` writes, as a tar the verifier reads; ``GET /log/leaves`` serves a range of
entries; both are recorded in the access log; a hostile archive is refused."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from ledger.bundle import Bundle
from ledger.bundle_tar import extract_bundle
from ledger.errors import VerificationFailed
from ledger.verify import verify_history
from tests import api_fixtures
from tests.api_fixtures import World

# Fixtures (bound here so pytest finds them in this module).
api_template = api_fixtures.api_template
world = api_fixtures.world


def test_bundle_streams_a_verifiable_tar_and_is_logged(world: World, tmp_path: Path) -> None:
    before = len(world.access_events())
    resp = world.client.get("/log/bundle", headers=world.auth("audrey"))
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/x-tar"
    names = extract_bundle(io.BytesIO(resp.content), tmp_path / "b")
    assert {"MANIFEST.json", "entries.jsonl", "checkpoint.note", "log.vkey"} <= set(names)
    b = Bundle(tmp_path / "b")
    b.check_files()
    report = verify_history(
        b.rows(), b.checkpoints(), trusted_log_key=None, projections=b.projections(),
        expected_size=b.manifest["size"], progress=False,
    )
    assert report.size == world.entry_count()
    events = world.access_events()[before:]
    assert [(e["event"]["action"], e["event"].get("format"), e["event"]["actor"]) for e in events] == [
        ("export", "bundle", "audrey")
    ]
    assert world.client.get("/log/bundle", headers=world.auth("olga")).status_code == 403


def test_leaves_serve_a_range_as_stored(world: World) -> None:
    n = world.entry_count()
    resp = world.client.get(f"/log/leaves?start={n - 3}&end={n}", headers=world.auth("audrey"))
    assert resp.status_code == 200
    lines = resp.content.splitlines()
    assert len(lines) == 3 and all(line.startswith(b"{") for line in lines)
    assert world.access_events()[-1]["event"]["format"] == "leaves"
    for bad in (f"start=0&end={n + 1}", "start=5&end=5"):
        r = world.client.get(f"/log/leaves?{bad}", headers=world.auth("audrey"))
        assert r.status_code == 422


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for info, data in members:
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.mark.parametrize(
    "name,kind",
    [("bundle/../evil", tarfile.REGTYPE), ("/etc/x", tarfile.REGTYPE), ("bundle/link", tarfile.SYMTYPE),
     ("other/MANIFEST.json", tarfile.REGTYPE), ("bundle/sub/x", tarfile.REGTYPE)],
)
def test_hostile_archives_are_refused(tmp_path: Path, name: str, kind: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    with pytest.raises(VerificationFailed, match="unexpected member"):
        extract_bundle(_tar([(info, b"x")]), tmp_path / "out")
    assert not any(p.name == "evil" for p in tmp_path.rglob("*"))
