"""Interop with the PyPI `standardwebhooks` package (independent of Herald).

stdin:  {"verify": [{"secret", "id", "timestamp", "signature", "body"}],
         "sign":   [{"id", "timestamp", "body"}]}
stdout: {"verify": [{"ok": bool, "error": str | null}],
         "sign":   [{"secret": "whsec_...", "signature": "v1,..."}]}

Signing draws a fresh 32-byte secret per case, so Herald must parse secrets
it did not create. Bodies are UTF-8 text (the package works on str).
"""

import base64
import json
import os
import sys
from datetime import datetime, timezone

from standardwebhooks import Webhook


def verify(case):
    headers = {
        "Webhook-Id": case["id"],
        "Webhook-Timestamp": str(case["timestamp"]),
        "Webhook-Signature": case["signature"],
    }
    try:
        Webhook(case["secret"]).verify(case["body"].encode("utf-8"), headers, json_parse=False)
        return {"ok": True, "error": None}
    except Exception as error:  # noqa: BLE001 - any failure is a refusal
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}


def sign(case):
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")
    when = datetime.fromtimestamp(case["timestamp"], tz=timezone.utc)
    signature = Webhook(secret).sign(case["id"], when, case["body"])
    return {"secret": secret, "signature": signature}


def main():
    request = json.load(sys.stdin)
    json.dump(
        {
            "verify": [verify(case) for case in request.get("verify", [])],
            "sign": [sign(case) for case in request.get("sign", [])],
        },
        sys.stdout,
    )


main()
