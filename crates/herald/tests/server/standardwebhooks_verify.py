"""Verifies Herald's deliveries with the PyPI `standardwebhooks` package
(independent of Herald), as a receiver would, with the package's clock
pinned to the test's manual clock so that its 5-minute tolerance is
checked against the instant Herald signed at.

stdin:  {"now": unix_seconds, "cases": [{"secret", "id", "timestamp", "signature", "body"}]}
stdout: [{"ok": bool, "error": str | null}]
"""

import json
import sys
from datetime import datetime

import standardwebhooks.webhooks as webhooks
from standardwebhooks import Webhook

request = json.load(sys.stdin)


class TestClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.fromtimestamp(request["now"], tz=tz)


webhooks.datetime = TestClock


def verify(case):
    headers = {
        "webhook-id": case["id"],
        "webhook-timestamp": str(case["timestamp"]),
        "webhook-signature": case["signature"],
    }
    try:
        Webhook(case["secret"]).verify(case["body"].encode("utf-8"), headers)
        return {"ok": True, "error": None}
    except Exception as error:  # noqa: BLE001 - any failure is a refusal
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}


json.dump([verify(case) for case in request["cases"]], sys.stdout)
