"""Independent verification of Herald's per-job webhook signatures, from
the JWKS alone: PyJWT for the body-bound JWTs, PyPI `cryptography` for
Standard Webhooks `v1a` (Ed25519).

stdin:  {"jwks": {...}, "deliveries": [{"format": "standard" | "jwt",
          "id", "timestamp", "signature", "audience", "body_b64"}]}
stdout: [{"ok": bool, "tampered_ok": bool, "error": str | null}]

Each delivery is checked as received and with one byte of its body
changed: a verifier that accepts everything would fail the test.
"""

import base64
import hashlib
import hmac
import json
import sys

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def ed25519_keys(jwks):
    keys = []
    for jwk in jwks["keys"]:
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            x = jwk["x"]
            keys.append(Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))))
    return keys


def verify_standard(jwks, delivery, body):
    content = f"{delivery['id']}.{delivery['timestamp']}.".encode("ascii") + body
    for entry in delivery["signature"].split(" "):
        label, _, value = entry.partition(",")
        if label != "v1a":
            continue
        for key in ed25519_keys(jwks):
            try:
                key.verify(base64.b64decode(value, validate=True), content)
                return
            except (InvalidSignature, ValueError):
                continue
    raise ValueError("no v1a entry verifies with a published key")


def verify_jwt(keyset, delivery, body):
    token = delivery["signature"]
    header = jwt.get_unverified_header(token)
    key = keyset[header["kid"]]
    claims = jwt.decode(
        token,
        key=key.key,
        algorithms=["EdDSA", "RS256"],
        audience=delivery["audience"],
        issuer="herald",
        options={"require": ["iss", "aud", "iat", "exp", "jti", "body_sha256"]},
    )
    if claims["jti"] != delivery["id"]:
        raise ValueError("jti does not match webhook-id")
    expected = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode("ascii")
    if not hmac.compare_digest(expected, claims["body_sha256"]):
        raise ValueError("body_sha256 does not match the body")


def check(jwks, keyset, delivery, body):
    try:
        if delivery["format"] == "standard":
            verify_standard(jwks, delivery, body)
        else:
            verify_jwt(keyset, delivery, body)
        return True, None
    except Exception as error:  # noqa: BLE001 - any failure is a refusal
        return False, f"{type(error).__name__}: {error}"


def main():
    request = json.load(sys.stdin)
    jwks = request["jwks"]
    keyset = jwt.PyJWKSet.from_dict(jwks)
    results = []
    for delivery in request["deliveries"]:
        body = base64.b64decode(delivery["body_b64"])
        ok, error = check(jwks, keyset, delivery, body)
        tampered = bytearray(body)
        tampered[len(tampered) // 2] ^= 1
        tampered_ok, _ = check(jwks, keyset, delivery, bytes(tampered))
        results.append({"ok": ok, "tampered_ok": tampered_ok, "error": error})
    json.dump(results, sys.stdout)


main()
