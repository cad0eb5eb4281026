"""Drives Herald through the real google-genai SDK's `client.webhooks`.

Creates, lists, gets, updates, pings, rotates the signing secret of and
deletes a webhook. Reads {base_url, key, uri} as JSON on stdin; prints what each call returned
as JSON on stdout. Any SDK error fails the script (and the test).
"""

import json
import sys

from google import genai

args = json.load(sys.stdin)
client = genai.Client(api_key=args["key"], http_options={"base_url": args["base_url"]})
hooks = client.webhooks

created = hooks.create(uri=args["uri"], subscribed_events=["batch.succeeded"], name="sdk")
listed = hooks.list(page_size=10)
fetched = hooks.get(id=created.id)
updated = hooks.update(id=created.id, name="renamed", update_mask="name")
pinged = hooks.ping(id=created.id)
# The SDK sends `{}` without revocation_behavior.
rotated = hooks.rotate_signing_secret(id=created.id)
overlapping = hooks.get(id=created.id)
revoked = hooks.rotate_signing_secret(
    id=created.id, revocation_behavior="revoke_previous_secrets_immediately"
)
after = hooks.get(id=created.id)
deleted = hooks.delete(id=created.id)


def dump(value):
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return repr(value)


listed_ids = [w.id for w in (listed.webhooks if hasattr(listed, "webhooks") else listed)]
print(
    json.dumps(
        {
            "created_id": created.id,
            "secret": created.new_signing_secret,
            "listed_ids": listed_ids,
            "fetched_name": fetched.name,
            "updated_name": updated.name,
            "ping": dump(pinged),
            "rotated_secret": rotated.secret,
            "secrets_during_overlap": dump(overlapping)["signing_secrets"],
            "revoked_secret": revoked.secret,
            "secrets_after": dump(after)["signing_secrets"],
            "deleted": dump(deleted),
        }
    )
)
