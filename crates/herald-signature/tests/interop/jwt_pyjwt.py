"""Interop for Herald's body-bound JWTs with PyJWT and the JWKS Herald exported.

stdin:  {"jwks": {...}, "cases": [{"token", "audience", "issuer", "webhook_id", "body_b64"}]}
stdout: [{"ok": bool, "error": str | null, "alg": str | null, "claims": {...} | null}]

What a consumer does: pick the JWK by the token's `kid`, let PyJWT check
the signature (EdDSA or RS256 only), `aud`, `iss`, `exp`, `iat` and the
presence of every claim, then check `jti` against `webhook-id` and
`body_sha256` against the SHA-256 of the received body.
"""

import base64
import hashlib
import hmac
import json
import sys

import jwt

REQUIRED = ["iss", "aud", "iat", "exp", "jti", "body_sha256"]


def verify(jwks, case):
    try:
        header = jwt.get_unverified_header(case["token"])
        key = jwks[header["kid"]]
        claims = jwt.decode(
            case["token"],
            key=key.key,
            algorithms=["EdDSA", "RS256"],
            audience=case["audience"],
            issuer=case["issuer"],
            options={"require": REQUIRED},
        )
        if claims["jti"] != case["webhook_id"]:
            raise ValueError("jti does not match webhook-id")
        digest = hashlib.sha256(base64.b64decode(case["body_b64"])).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        if not hmac.compare_digest(expected, claims["body_sha256"]):
            raise ValueError("body_sha256 does not match the body")
        return {"ok": True, "error": None, "alg": header["alg"], "claims": claims}
    except Exception as error:  # noqa: BLE001 - any failure is a refusal
        return {"ok": False, "error": f"{type(error).__name__}: {error}", "alg": None, "claims": None}


def main():
    request = json.load(sys.stdin)
    jwks = jwt.PyJWKSet.from_dict(request["jwks"])
    json.dump([verify(jwks, case) for case in request["cases"]], sys.stdout)


main()
