"""Test-time signing of CAP messages: a fresh RSA key and self-signed certificate per call
(nothing private is ever written to the repository), enveloped XML signatures by signxml."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import methods
from signxml.signer import XMLSigner


@dataclass(frozen=True)
class SigningKey:
    key_pem: bytes
    cert_pem: bytes
    subject: str

    def write_cert(self, path: Path) -> str:
        path.write_bytes(self.cert_pem)
        return str(path)

    def sign(self, xml: bytes, *, signature_id: str | None = "sig-2026-12-01T08:00:00") -> bytes:
        """An enveloped signature at the end of <alert>, as national aggregators send. Their Id
        values (here with colons) are not xs:ID values: the gateway must accept them anyway."""
        root = etree.fromstring(xml)
        signed = XMLSigner(method=methods.enveloped, c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#").sign(
            root, key=self.key_pem, cert=[self.cert_pem.decode()])
        if signature_id is not None:  # outside SignedInfo, so adding it keeps the signature valid
            signed[-1].set("Id", signature_id)
        return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


def new_signing_key(common_name: str = "山西省突发事件预警信息发布中心") -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return SigningKey(
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM), subject=cert.subject.rfc4514_string())
