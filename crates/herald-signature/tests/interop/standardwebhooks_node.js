// Interop with the npm `standardwebhooks` package (an independent code base
// from the Python one). Same protocol as standardwebhooks_py.py:
// stdin  {"verify": [{secret, id, timestamp, signature, body}], "sign": [{id, timestamp, body}]}
// stdout {"verify": [{ok, error}], "sign": [{secret, signature}]}
"use strict";

const crypto = require("node:crypto");
const { Webhook } = require("standardwebhooks");

function verify(c) {
  const headers = {
    "Webhook-Id": c.id,
    "Webhook-Timestamp": String(c.timestamp),
    "Webhook-Signature": c.signature,
  };
  try {
    new Webhook(c.secret).verify(c.body, headers, { jsonParse: false });
    return { ok: true, error: null };
  } catch (error) {
    return { ok: false, error: `${error.name}: ${error.message}` };
  }
}

function sign(c) {
  const secret = `whsec_${crypto.randomBytes(32).toString("base64")}`;
  const signature = new Webhook(secret).sign(c.id, new Date(c.timestamp * 1000), c.body);
  return { secret, signature };
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  input += chunk;
});
process.stdin.on("end", () => {
  const request = JSON.parse(input);
  process.stdout.write(
    JSON.stringify({
      verify: (request.verify || []).map(verify),
      sign: (request.sign || []).map(sign),
    }),
  );
});
