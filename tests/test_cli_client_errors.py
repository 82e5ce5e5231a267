"""How client mode reports what the service answers (issue #9): the exit codes and one
line of local mode, whatever the status. A stub service answers each problem in turn."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.test_cli import assert_one_line_error, run

PROBLEMS = {
    "/registry/owners": (409, {"type": "https://x/problems/rule/role", "detail": "an admin records no movement"}),
    "/registry/materials": (422, {"type": "https://x/problems/invalid-entry", "detail": "too long", "field": "entry.name"}),
    "/registry/lots": (500, {"type": "https://x/problems/internal", "detail": "the service could not complete this request"}),
    "/sites": (403, {"type": "https://x/problems/forbidden", "detail": "not yours"}),
    "/registry/keys": (302, {}),
}
SECRET_TOKEN = "tok-" + "s3cr3t" * 8


class Stub(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = PROBLEMS.get(self.path.split("?")[0], (404, {"detail": "no such route"}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/problem+json")
        if status == 302:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _client(tmp_path: Path, url: str, *args: str) -> tuple[int, str]:
    proc = run(tmp_path, *args, env={"RESERVE_URL": url, "RESERVE_USER": "olga", "RESERVE_TOKEN": SECRET_TOKEN})
    assert_one_line_error(proc)
    assert SECRET_TOKEN not in proc.stderr + proc.stdout
    return proc.returncode, proc.stderr


def test_rule_refusal_is_exit_1_naming_the_rule(tmp_path: Path, url: str) -> None:
    assert _client(tmp_path, url, "owner", "list") == (1, "refused (role), the entry was not appended: an admin records no movement\n")


def test_server_flag_is_client_mode_too(tmp_path: Path, url: str) -> None:
    proc = run(tmp_path, "--server", url, "owner", "list", env={"RESERVE_USER": "olga", "RESERVE_TOKEN": SECRET_TOKEN})
    assert_one_line_error(proc)
    assert proc.returncode == 1 and "refused (role)" in proc.stderr


def test_invalid_input_is_exit_1_naming_the_field(tmp_path: Path, url: str) -> None:
    code, err = _client(tmp_path, url, "material", "list")
    assert code == 1 and "entry.name" in err and "too long" in err


def test_server_failure_is_exit_70(tmp_path: Path, url: str) -> None:
    code, err = _client(tmp_path, url, "lot", "list")
    assert code == 70 and "HTTP 500" in err


def test_forbidden_is_exit_1(tmp_path: Path, url: str) -> None:
    assert _client(tmp_path, url, "site", "list")[0] == 1


def test_redirects_are_not_followed(tmp_path: Path, url: str) -> None:
    code, err = _client(tmp_path, url, "keys", "list")
    assert code == 1 and "302" in err


def test_bad_url_and_missing_ca_are_usage_errors(tmp_path: Path) -> None:
    assert _client(tmp_path, "ftp://example", "owner", "list")[0] == 2
    proc = run(tmp_path, "owner", "list", env={"RESERVE_URL": "https://127.0.0.1:9", "RESERVE_USER": "olga",
                                               "RESERVE_CA": str(tmp_path / "missing.pem"), "RESERVE_TOKEN": "t"})
    assert_one_line_error(proc)
    assert proc.returncode == 2 and "RESERVE_CA" in proc.stderr


def test_unknown_proposal_is_exit_1(tmp_path: Path, url: str) -> None:
    code, _ = _client(tmp_path, url, "proposal", "show", "abc")
    assert code == 1  # the stub knows no proposals: 404 -> exit 1
