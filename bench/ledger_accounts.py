"""Open and fund N accounts in one engine; print peak RSS and timings as JSON.

Run in its own process so the peak RSS is the ledger's: ``python -m bench.ledger_accounts N``.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from openbell.core import commands as c
from openbell.core.engine import Engine
from openbell.core.types import FIRST_USER_ACCOUNT


def main(accounts: int) -> dict[str, float]:
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    engine = Engine()
    seq = 0

    def apply(cmd: c.Command) -> None:
        nonlocal seq
        seq += 1
        for event in engine.apply(seq, seq, cmd):
            if type(event).__name__ == "Rejected":
                raise RuntimeError(event)

    apply(c.CreateAsset(asset="USD", scale=2))
    started = time.perf_counter()
    apply(c.OpenAccounts(count=accounts))
    opened = time.perf_counter()
    apply(
        c.DepositMany(
            first_account=FIRST_USER_ACCOUNT, count=accounts, asset="USD", amount_minor=1_000_000
        )
    )
    funded = time.perf_counter()
    engine.ledger.check_invariants()
    checked = time.perf_counter()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "accounts": accounts,
        "open_s": opened - started,
        "fund_s": funded - opened,
        "invariant_check_s": checked - funded,
        "rss_gb": rss_kb / 1024 / 1024,
        "bytes_per_account": (rss_kb - rss_before_kb) * 1024 / accounts,
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
