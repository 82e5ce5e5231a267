"""A property-based fuzz of the whole HTTP API, driven by its own OpenAPI document
(Schemathesis), in process against the ASGI app (issue #8, "Tests that must exist").

Every operation is called with generated requests, valid and invalid per the schema,
authenticated as each role (and with no token), on SQLite and on PostgreSQL. It asserts:

* no response is a 5xx, and none is anything but JSON or the routes' own text/JSON lines;
* afterwards the ledger verifies (``verify_database``: signatures, chain, every rule
  replayed, projections), and the access log verifies;
* the log grew by exactly the 2xx writes: the seqs the 201 answers named are exactly the
  new entries (an idempotent retry names an earlier seq and adds none).

Bounded for CI: ``FUZZ_EXAMPLES`` examples per operation, role and generation mode
(default 3), no Hypothesis deadline, no example database; about a minute per engine on
the project's 2-core machine. Run it alone: ``pytest -m fuzz``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from ledger.access_log import verify_access_log  # noqa: E402
from ledger.store.access import iter_access, iter_access_checkpoints  # noqa: E402
from ledger.store.audit import verify_database  # noqa: E402
from ledger.timefmt import now  # noqa: E402
from tests import api_fixtures  # noqa: E402
from tests.api_fixtures import (  # noqa: E402
    MATRIX_USERS,
    World,
    build_ledger_home,
    open_world,
    scratch_dir,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]
api_template = api_fixtures.api_template

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# Wall-clock bound per engine: past it, the remaining operations get one example each.
BUDGET_SECONDS = float(os.environ.get("FUZZ_BUDGET_SECONDS", "60"))


@pytest.fixture(params=["sqlite", "postgresql"])
def fuzz_world(
    request: pytest.FixtureRequest, api_template: api_fixtures.Template, tmp_path: Path
) -> Iterator[World]:
    with scratch_dir(tmp_path) as base:
        if request.param == "sqlite":
            w = api_fixtures.copy_world(api_template, base / "home")
        else:
            pg_url = request.getfixturevalue("pg_url")
            home = base / "pg-home"
            home.mkdir()
            w = open_world(home, pg_url, build_ledger_home(home, pg_url), reuse_sealer=True)
        yield w
        w.close()


def _seq_of(resp: Any) -> int | None:
    """The seq a successful write names (entries appended answer 201 with one)."""
    if resp.status_code != 201:
        return None
    try:
        body = resp.json()
    except ValueError:
        return None
    seq = body.get("seq") if isinstance(body, dict) else None
    return seq if isinstance(seq, int) else None


@dataclass
class Tally:
    statuses: dict[int, int] = field(default_factory=dict)
    seqs: set[int] = field(default_factory=set)
    server_errors: list[str] = field(default_factory=list)
    last_body: dict[str, Any] = field(default_factory=dict)


def _fuzzer(
    op: Any, mode: Any, headers: dict[str, str], user: str, examples: int, tally: Tally
) -> Any:
    """A Hypothesis test calling ``op`` with ``examples`` generated requests."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: Any) -> None:
        case = data.draw(op.as_strategy(generation_mode=mode))
        try:
            resp = case.call(headers=headers)
        except Exception as exc:
            # A request the HTTP client itself refuses to send (an invalid header value)
            # never reaches the service: nothing to check.
            if type(exc).__name__ in ("InvalidHeader", "LocalProtocolError"):
                return
            raise
        tally.statuses[resp.status_code] = tally.statuses.get(resp.status_code, 0) + 1
        if resp.status_code >= 500:
            tally.server_errors.append(
                f"{case.method} {case.formatted_path} as {user}: "
                f"{resp.status_code} {resp.text[:200]}"
            )
        seq = _seq_of(resp)
        if seq is not None:
            tally.seqs.add(seq)

    return run


def _valid_writes(w: World, i: int, tally: Tally) -> None:
    """Real writes between the fuzzed ones, so "the log grew by exactly the 2xx writes"
    is checked against writes that happen; every other one retries an earlier key."""
    body = {
        "site": api_fixtures.SITE_A,
        "owner": api_fixtures.JP,
        "lot": api_fixtures.LOT_NDPR,
        "quantity": "1 kg",
        "occurred_at": now(),
        "supplier": "Lynas Rare Earths",
        "accepted_purity": "99.50",
        "reference": f"PO-FUZZ-{i // 2}",
    }
    headers = {**w.auth("olga"), "Idempotency-Key": f"fuzz-{i // 2}"}
    if i % 2:  # the retry of the same key and request answers the first result
        body = tally.last_body
    tally.last_body = body
    resp = w.client.post("/stock/receive", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    seq = _seq_of(resp)
    assert seq is not None
    tally.seqs.add(seq)


def test_fuzz_the_whole_api_as_every_role(fuzz_world: World) -> None:
    w = fuzz_world
    schema = schemathesis.openapi.from_asgi("/openapi.json", w.app)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 25, "the OpenAPI document lost operations"
    size_before = w.entry_count()
    tokens: dict[str, str | None] = {u: w.token(u) for u in MATRIX_USERS.values()}
    tokens["anonymous"] = None
    tally = Tally()
    started = time.monotonic()

    for i, op in enumerate(operations):
        _valid_writes(w, i, tally)
        for user, token in tokens.items():
            for mode in MODES:
                examples = EXAMPLES if time.monotonic() - started < BUDGET_SECONDS else 1
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                try:
                    _fuzzer(op, mode, headers, user, examples, tally)()
                except Unsatisfiable:  # no invalid request exists for this operation
                    assert mode == GenerationMode.NEGATIVE

    statuses, seqs, server_errors = tally.statuses, tally.seqs, tally.server_errors
    print(f"fuzz: {sum(statuses.values())} requests in {time.monotonic() - started:.0f} s, statuses {sorted(statuses.items())}, {len(seqs)} writes")
    assert not server_errors, server_errors[:10]
    assert statuses, "nothing was sent"
    # The log grew by exactly the writes answered 2xx (retries name an earlier seq).
    size_after = w.entry_count()
    new = {s for s in seqs if s >= size_before}
    assert new == set(range(size_before, size_after)), (size_before, size_after, sorted(new))
    # And what was written obeys every rule, with projections that match.
    w.svc.committer.close()
    verify_database(w.svc.ledger.engine, trusted_log_key=None)
    w.svc.refusals.flush(end_windows=True)
    keys = [bytes.fromhex(k.public_key) for k in w.svc.ledger.registered_keys() if k.user == "log"]
    with w.svc.reader.connect() as conn:
        verify_access_log(
            iter_access(conn), iter_access_checkpoints(conn), log_id=w.svc.log_id, log_keys=keys
        )
