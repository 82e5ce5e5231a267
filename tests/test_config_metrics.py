"""Configuration validated at start, proxies, and /metrics (issue #11), in process."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient

from api.app import create_app
from api.config import api_problems, load_api_settings
from cli.main import main
from ledger.errors import ConfigError
from ledger.store.access import keyed_hash
from tests import api_fixtures
from tests.api_fixtures import SITE_A, World, captured_logs, location_needles

api_template = api_fixtures.api_template
world = api_fixtures.world

SECRETISH = "hunter2-not-for-logs"


@pytest.fixture(autouse=True)
def _no_logger_caching() -> Iterator[None]:
    """A logger first used here must not be cached under a configuration another test
    left behind (the CLI caches loggers), or later tests could not capture its events."""
    config = structlog.get_config()
    structlog.configure(cache_logger_on_first_use=False)
    yield
    structlog.configure(cache_logger_on_first_use=config["cache_logger_on_first_use"])


def test_every_problem_listed_one_line_each_without_values() -> None:
    env = {
        "RESERVE_DB": f"mysql://root:{SECRETISH}@db/x",
        "RESERVE_DB_READ": f"sqlite:///{SECRETISH}.db",
        "RESERVE_LOG_LEVEL": "loud",
        "RESERVE_LOG_FORMAT": "xml",
        "RESERVE_TOKEN_TTL": "forever",
        "RESERVE_JWKS_URL": "http://idp.example/jwks",
        "RESERVE_TRUSTED_PROXIES": "10.0.0.1,not-an-ip",
        "RESERVE_WORKERS": "0",
        "RESERVE_TOKEN_ISSUER": " ",
    }
    with pytest.raises(ConfigError) as info:
        load_api_settings(env)
    lines = str(info.value).splitlines()
    names = [
        "RESERVE_DB ", "RESERVE_DB_READ", "RESERVE_LOG_LEVEL", "RESERVE_LOG_FORMAT",
        "RESERVE_TOKEN_TTL", "RESERVE_JWKS_URL", "RESERVE_TRUSTED_PROXIES", "RESERVE_WORKERS",
        "RESERVE_TOKEN_ISSUER",
    ]
    for name in names:
        assert sum(line.startswith(name) for line in lines) == 1, (name, lines)
    assert len(lines) == len(names)
    assert SECRETISH not in str(info.value)


def test_pkcs11_needs_its_three_variables() -> None:
    problems = api_problems({"RESERVE_KEYSTORE": "pkcs11"})
    assert problems == [
        "RESERVE_KEYSTORE=pkcs11 needs RESERVE_PKCS11_MODULE",
        "RESERVE_KEYSTORE=pkcs11 needs RESERVE_PKCS11_TOKEN",
        "RESERVE_KEYSTORE=pkcs11 needs RESERVE_PKCS11_PIN",
    ]
    pin = "1234-pin-value"
    problems = api_problems({
        "RESERVE_KEYSTORE": "pkcs11", "RESERVE_PKCS11_MODULE": "/nonexistent/libsofthsm2.so",
        "RESERVE_PKCS11_TOKEN": "reserve", "RESERVE_PKCS11_PIN": pin,
    })
    assert problems == ["RESERVE_PKCS11_MODULE does not name a readable library file"]
    assert api_problems({"RESERVE_KEYSTORE": "hsm"}) == ["RESERVE_KEYSTORE must be one of file, pkcs11"]


def test_good_settings_load() -> None:
    s = load_api_settings({
        "RESERVE_DB": "postgresql://postgres@127.0.0.1/test",
        "RESERVE_DB_READ": "postgresql://postgres@127.0.0.1:5433/test",
        "RESERVE_WORKERS": "4",
        "RESERVE_TRUSTED_PROXIES": "10.1.0.0/16, 192.0.2.7",
        "RESERVE_LOG_FORMAT": "console",
    })
    assert s.workers == 4
    assert s.ledger.read_url.endswith(":5433/test")
    assert [str(n) for n in s.trusted_proxies] == ["10.1.0.0/16", "192.0.2.7/32"]
    assert s.ledger.log_format == "console"


def test_cli_lists_every_problem_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RESERVE_HOME", str(tmp_path))
    monkeypatch.setenv("RESERVE_LOG_FORMAT", "xml")
    monkeypatch.setenv("RESERVE_KEYSTORE", "pkcs11")
    assert main(["keys", "list"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: RESERVE_LOG_FORMAT must be one of json, console"
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert "Traceback" not in "\n".join(err)


def test_serve_refuses_several_workers_on_sqlite(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RESERVE_HOME", str(tmp_path))
    monkeypatch.delenv("RESERVE_DB", raising=False)
    monkeypatch.setenv("RESERVE_PASSPHRASE", "irrelevant")
    assert main(["serve", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --workers > 1 needs PostgreSQL (RESERVE_DB=postgresql://...); SQLite runs one worker\n"
    monkeypatch.setenv("RESERVE_WORKERS", "3")
    assert main(["serve"]) == 2  # the variable is checked the same way
    capsys.readouterr()
    # The ledger's and the service's problems come in one list.
    monkeypatch.setenv("RESERVE_LOG_FORMAT", "xml")
    monkeypatch.setenv("RESERVE_TRUSTED_PROXIES", "proxy.example")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].split()[0] for line in err] == [
        "RESERVE_LOG_FORMAT", "RESERVE_TRUSTED_PROXIES", "--workers"
    ], err


# -- proxies -------------------------------------------------------------------------


def _client(w: World, host: str, **settings: object) -> Iterator[TestClient]:
    svc = w.svc
    svc.settings = replace(svc.settings, **settings)  # type: ignore[arg-type]
    client = TestClient(create_app(svc), raise_server_exceptions=False, client=(host, 40000))
    yield client
    client.close()


@contextlib.contextmanager
def _client_cm(w: World, host: str, **settings: object) -> Iterator[TestClient]:
    yield from _client(w, host, **settings)


def _last_refusal_client(w: World) -> str:
    refused = [e for e in w.access_events() if e["event"]["action"] == "refused"]
    return str(refused[-1]["event"]["client_hmac"])


def test_forwarded_for_believed_only_from_configured_proxies(world: World) -> None:
    import ipaddress

    key = world.svc.hmac_key
    spoof = {"X-Forwarded-For": "203.0.113.9"}
    # No trusted proxy configured: the header is ignored, the peer is the client.
    for client in _client(world, "127.0.0.1"):
        assert client.get("/me", headers=spoof).status_code == 401
    assert _last_refusal_client(world) == keyed_hash(key, "127.0.0.1")
    # The peer is a configured proxy: its X-Forwarded-For names the client.
    proxies = (ipaddress.ip_network("127.0.0.1/32"),)
    for client in _client(world, "127.0.0.1", trusted_proxies=proxies):
        assert client.get("/me", headers=spoof).status_code == 401
    assert _last_refusal_client(world) == keyed_hash(key, "203.0.113.9")
    # Another peer claiming to forward: not believed.
    for client in _client(world, "198.51.100.4", trusted_proxies=proxies):
        assert client.get("/me", headers=spoof).status_code == 401
    assert _last_refusal_client(world) == keyed_hash(key, "198.51.100.4")


# -- metrics -------------------------------------------------------------------------


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_only_for_the_monitoring_host(world: World) -> None:
    for client in _client(world, "192.0.2.50"):
        assert client.get("/metrics").status_code == 404
    for client in _client(world, "127.0.0.1"):
        r = client.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        # Through the public proxy (it adds X-Forwarded-For): refused even from loopback.
        assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 404


def test_metrics_count_appends_refusals_routes_without_ids_or_secrets(world: World) -> None:
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    appends0 = value("reserve_appends_total", kind="stock.receipt")
    refusals0 = value("reserve_refusals_total", rule="negative-holding")
    reveals0 = value("reserve_location_reveals_total")
    # Capture logs: no logger is first used (and cached) under another test's CLI
    # configuration, and the metrics' events must not leak either.
    with captured_logs() as lines, contextlib.ExitStack() as stack:
        client = stack.enter_context(_client_cm(world, "127.0.0.1"))
        olga = world.auth("olga")
        body = {"site": SITE_A, "owner": "JP-RESERVE", "lot": "NDPR-2025-001", "quantity": "1 kg",
                "occurred_at": "2026-01-01T00:00:00Z", "supplier": "Lynas Rare Earths",
                "accepted_purity": "99.50", "reference": "PO-METRICS"}
        assert client.post("/stock/receive", json=body, headers=olga).status_code == 201
        too_much = {"site": SITE_A, "owner": "JP-RESERVE", "lot": "NDPR-2025-001",
                    "quantity": "100000 t", "occurred_at": "2026-01-02T00:00:00Z",
                    "to_site": "SITE-2B9Q", "reference": "TR-METRICS"}
        r = client.post("/stock/dispatch", json=too_much, headers=olga)
        assert r.status_code == 409, r.text
        assert client.get(f"/sites/{SITE_A}", headers=olga).status_code == 200
        reveal = client.post(f"/sites/{SITE_A}/reveal", json={"purpose": "inspection of the depot"},
                             headers=olga)
        assert reveal.status_code == 200
        text = client.get("/metrics").text
    assert not any(SITE_A in line or olga["Authorization"][7:] in line for line in lines
                   if "metrics" in line)
    assert value("reserve_appends_total", kind="stock.receipt") == appends0 + 1
    rule = json.loads(r.text)["type"].rsplit("/", 1)[-1]
    assert rule == "negative-holding"
    assert value("reserve_refusals_total", rule=rule) == refusals0 + 1
    assert value("reserve_location_reveals_total") == reveals0 + 1
    samples = _samples(text)
    assert samples["reserve_log_size"] == world.entry_count()
    assert 0 <= samples["reserve_checkpoint_age_seconds"] < 60
    assert any('route="/sites/{code}"' in k for k in samples)
    assert any(k.startswith("reserve_group_commit_size_count") for k in samples)
    # No raw path, code, user, token or location in any label.
    assert SITE_A not in text and "olga" not in text and olga["Authorization"][7:] not in text
    for needle in location_needles(SITE_A):
        assert needle not in text
    assert not re.search(r'route="[^"{]*\d', text)


def test_token_key_made_once_when_workers_start_together(tmp_path: Path) -> None:
    """Two workers starting at once both find no issuer key; the loser of the creation
    race must load the winner's key, or one worker's tokens fail on the other."""
    from api.services import TOKEN_KEY_NAME, _token_signer
    from keys import FileKeystore
    from tests.conftest import PASSPHRASE

    winner = FileKeystore(tmp_path, passphrase=PASSPHRASE)

    class LateKeystore(FileKeystore):
        """Looked before the winner wrote its key: the first exists() said no."""

        looked = False

        def exists(self, name: str) -> bool:
            if not self.looked:
                self.looked = True
                return False
            return super().exists(name)

    first = _token_signer(winner)
    second = _token_signer(LateKeystore(tmp_path, passphrase=PASSPHRASE))
    assert second.public_key == first.public_key
    assert winner.load(TOKEN_KEY_NAME).public_key == first.public_key
