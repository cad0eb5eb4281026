"""Interop for `v1a` (Ed25519) with the PyPI `cryptography` package.

stdin:  {"verify": [{"public_key": "whpk_...", "jwk": {...}, "id", "timestamp",
                     "body_b64", "signature": "<webhook-signature value>"}],
         "sign":   [{"id", "timestamp", "body_b64"}]}
stdout: {"verify": [{"ok_whpk": bool, "ok_jwk": bool}],
         "sign":   [{"public_key": "whpk_...", "signature": "v1a,..."}]}

A case verifies when any `v1a` entry of the header verifies; other labels
are skipped as the spec requires. The JWK path decodes the RFC 8037 `x`.
"""

import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def signed_content(case):
    body = base64.b64decode(case["body_b64"])
    return f"{case['id']}.{case['timestamp']}.".encode("ascii") + body


def any_entry_verifies(public_key, header, content):
    for entry in header.split(" "):
        label, _, value = entry.partition(",")
        if label != "v1a":
            continue
        try:
            public_key.verify(base64.b64decode(value, validate=True), content)
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def from_whpk(text):
    assert text.startswith("whpk_"), text
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text[len("whpk_"):], validate=True))


def from_jwk(jwk):
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519", jwk
    x = jwk["x"]
    return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))


def verify(case):
    content = signed_content(case)
    return {
        "ok_whpk": any_entry_verifies(from_whpk(case["public_key"]), case["signature"], content),
        "ok_jwk": any_entry_verifies(from_jwk(case["jwk"]), case["signature"], content),
    }


def sign(case):
    key = Ed25519PrivateKey.generate()
    raw_public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    signature = key.sign(signed_content(case))
    return {
        "public_key": "whpk_" + base64.b64encode(raw_public).decode("ascii"),
        "signature": "v1a," + base64.b64encode(signature).decode("ascii"),
    }


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
