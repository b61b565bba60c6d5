// GitHub's own signer and verifier (@octokit/webhooks-methods), one JSON request per line on stdin,
// one JSON answer per line on stdout, for tests/proofs/test_independent_signers.py:
//   {"op": "sign", "secret": s, "payload": p}                  -> {"signature": "sha256=..."}
//   {"op": "verify", "secret": s, "payload": p, "signature": x} -> {"valid": true | false}
// Anything that throws answers {"error": message}.
import { createInterface } from "node:readline";
import { sign, verify } from "@octokit/webhooks-methods";

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  let answer;
  try {
    const request = JSON.parse(line);
    if (request.op === "sign") {
      answer = { signature: await sign(request.secret, request.payload) };
    } else if (request.op === "verify") {
      answer = { valid: await verify(request.secret, request.payload, request.signature) };
    } else {
      answer = { error: `unknown op ${request.op}` };
    }
  } catch (error) {
    answer = { error: String(error && error.message ? error.message : error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
