"""Capture key checks: the CPU one submission's key check costs, sealed (scrypt) and remembered, against the plain compare.

Measures in one run, CPU time of this process (time.process_time: every thread, so the scrypt
threads count) per check, and each figure as a ratio to the baseline:
  plain compare   what the service did before: hmac.compare_digest with the key stored as given (baseline);
  scrypt check    a key checked against its stored hash: a form's first submission in a process, or a wrong key;
  remembered      KeyChecks.check for a key verified before: a form's later submissions.

Needs no stack. Run: .venv/bin/python bench/bench_capture_keys.py [--checks 50]
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.leads.capture import keys  # noqa: E402

KEY = "k3y-for-the-shop-server"


def _cpu_us(run, n: int) -> float:
    started = time.process_time()
    run(n)
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=50, help="scrypt checks timed (the fast ones run 1,000 times as many)")
    args = parser.parse_args()
    sealed = keys.seal(KEY)
    stored = KEY.encode()
    checks = keys.KeyChecks()

    def plain(n: int) -> None:
        for _ in range(n):
            hmac.compare_digest(KEY.encode(), stored)

    def scrypt(n: int) -> None:
        for _ in range(n):
            keys.matches(KEY, sealed)

    def remembered(n: int) -> None:
        async def go() -> None:
            for _ in range(n):
                await checks.check(KEY, sealed)
        asyncio.run(go())

    asyncio.run(checks.check(KEY, sealed))  # the first check: remembered from here on
    fast = args.checks * 1000
    rows = [("plain compare", _cpu_us(plain, fast)), ("scrypt check", _cpu_us(scrypt, args.checks)),
            ("remembered", _cpu_us(remembered, fast))]
    base = rows[0][1]
    print(f"{'check':<16}{'CPU us/check':>14}{'x plain':>10}")
    for name, us in rows:
        print(f"{name:<16}{us:>14.2f}{us / base:>10.1f}")


if __name__ == "__main__":
    main()
