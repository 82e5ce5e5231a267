"""A sample history for ``reserve demo``: users of every role and some movements."""

from __future__ import annotations

from ledger.errors import Rejected
from ledger.service import Ledger

DEMO_USERS = [
    # user, roles, sites, owners, clearance
    ("olga", ["operator"], ["SITE-7F3K"], [], "SECRET"),
    ("omar", ["operator"], ["SITE-2B9Q"], [], "RESTRICTED"),
    ("fiona", ["official"], [], ["JP-RESERVE"], "NONE"),
    ("felix", ["official"], [], ["JP-RESERVE"], "NONE"),
    ("mina", ["minister"], [], ["JP-RESERVE"], "CONFIDENTIAL"),
    ("audrey", ["auditor"], [], [], "NONE"),
]


def run_demo(led: Ledger) -> int:
    registered = {k.user for k in led.registered_keys()}
    for user, roles, sites, owners, clearance in DEMO_USERS:
        if user not in registered:
            led.register_key(
                admin="admin",
                user=user,
                roles=roles,
                sites=sites,
                owners=owners,
                clearance=clearance,
            )
    res = None
    for i, (user, account, delta) in enumerate(
        [
            ("olga", "NDPR-OXIDE", 25_000_000),
            ("omar", "GA-METAL", 4_000_000),
            ("olga", "NDPR-OXIDE", -1_500_000),
        ]
        * 3
    ):
        del i
        try:
            res = led.act(user, "test.movement", account=account, delta=delta)
        except Rejected:
            continue
    return res.size if res else 0
