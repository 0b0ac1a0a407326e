"""Enveloped XML signatures on CAP messages, verified with signxml (never hand-written
canonicalisation). The rules, in order:

- no `cap.trusted_certs`: a signature is neither required nor checked (recorded as unverified);
- with them, a signed message must verify against one of those certificates, the signature
  sitting at the end of <alert> and covering the whole document (URI=""), else 422 `bad_signature`;
- `cap.require_signature: true` refuses an unsigned message, 422 `signature_required`.

The document reaching here has passed defusedxml (no DTD, no entities), so lxml inside signxml
parses nothing hostile; signxml's own XML-DSig schema check is off because real signers use Id
values that schema's ID type refuses, and the structure is checked by signxml all the same.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cap import CapAlert, CapError
from gateway.config import CapCfg

if TYPE_CHECKING:
    from cryptography import x509

# signxml, lxml and cryptography are imported on first use: ~15 MiB that a daemon receiving no
# signed CAP never needs

__all__ = ["Signer", "check_signature", "load_certs"]


@dataclass(frozen=True, slots=True)
class Signer:
    subject: str  # RFC 4514, e.g. CN=...,O=...
    sha256: str  # fingerprint of the certificate that verified it

    def record(self) -> dict[str, str]:
        return {"subject": self.subject, "sha256": self.sha256}


@functools.cache
def _load(path: str, mtime_ns: int) -> tuple[x509.Certificate, ...]:
    del mtime_ns  # part of the cache key only: an edited file is read again
    from cryptography import x509

    return tuple(x509.load_pem_x509_certificates(Path(path).read_bytes()))


def load_certs(paths: Sequence[str]) -> list[x509.Certificate]:
    """Every certificate in the PEM files.

    Raises:
        OSError: a file cannot be read; ValueError: a file holds no PEM certificate.
    """
    out: list[x509.Certificate] = []
    for p in paths:
        out.extend(_load(p, Path(p).stat().st_mtime_ns))
    return out


def check_signature(raw: bytes, alert: CapAlert, cfg: CapCfg) -> Signer | None:
    """The verified signer, or None when nothing was verified (no trusted certificates, or an
    unsigned message that is allowed). CPU work: run it off the event loop.

    Raises:
        CapError: 422 `bad_signature` (also when the trusted certificate files cannot be read),
        422 `signature_required`.
    """
    if not alert.signed:
        if cfg.require_signature:
            raise CapError(422, "signature_required", "this gateway accepts only signed CAP (an enveloped XML "
                           "signature by a trusted certificate)", field="/alert/Signature")
        return None
    if not cfg.trusted_certs:
        return None
    try:
        certs = load_certs(cfg.trusted_certs)
    except (OSError, ValueError) as exc:
        raise CapError(422, "bad_signature", f"the signature cannot be checked: trusted certificates unreadable "
                       f"({type(exc).__name__})", field="/alert/Signature") from exc
    from cryptography.hazmat.primitives import hashes
    from signxml.exceptions import InvalidInput, SignXMLException
    from signxml.verifier import SignatureConfiguration, XMLVerifier

    # the signature is a child of the root <alert>, with one reference (the whole document)
    expect = SignatureConfiguration(location="./", expect_references=1)
    last = "no trusted certificate"
    for cert in certs:
        try:
            result = XMLVerifier().verify(raw, x509_cert=cert, validate_schema=False, expect_config=expect)
        except (SignXMLException, InvalidInput, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"[:200]
            continue
        signed = getattr(result, "signed_xml", None)
        if signed is None or getattr(signed, "tag", "").rpartition("}")[2] != "alert":
            last = "the signature does not cover the whole <alert>"
            continue
        return Signer(cert.subject.rfc4514_string(), cert.fingerprint(hashes.SHA256()).hex())
    raise CapError(422, "bad_signature", f"the XML signature does not verify against any trusted certificate "
                   f"({last})", field="/alert/Signature")
