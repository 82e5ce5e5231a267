"""A burst of conversions on a fresh interpreter never crashes it (issue #8, item 1).

msgspec inspects a type lazily on first use; two threads doing that at once crashed the
service with SIGSEGV on about half of fresh starts. ``ledger.entries.warm_up`` builds every
decoder first. Each run is a new interpreter, because the crash needs a cold type cache.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BURST = textwrap.dedent(
    """
    import threading
    from ledger.entries import parse_submission, sign_body, warm_up
    from ledger.service import new_body
    from keys import Ed25519Signer

    warm_up()  # what the service does before it serves (api.services.build_services)
    signer = Ed25519Signer.generate()
    subs = [
        sign_body(new_body("stock.receipt", "olga", site="S", owner="O", lot="L", quantity=n + 1,
                           occurred_at="2026-01-01T00:00:00Z", supplier="Umicore",
                           accepted_purity="99.5", reference="r"), [signer])
        for n in range(64)
    ]
    gate = threading.Barrier(32)

    def hit(i):
        gate.wait()
        for s in subs[i::32]:
            parse_submission(s)

    threads = [threading.Thread(target=hit, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("ok")
    """
)


def test_fresh_interpreters_survive_a_burst_of_conversions() -> None:
    for _ in range(6):
        run = subprocess.run(
            [sys.executable, "-c", BURST], capture_output=True, text=True, timeout=60, check=False
        )
        assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
        assert run.stdout.strip() == "ok"
