"""Which TLS failures are permanent: one place for every storage client.

A certificate the worker does not trust (self-signed, an unknown authority, a
CA certificate served as the end entity), one that is expired or names another
host, or a server that does not speak TLS at all fails the same way on every
try: retrying only delays the failure by the job's whole retry schedule. Both
HTTP stacks the worker uses are recognised: obstore (rustls: ``InvalidCertificate
(UnknownIssuer)``, ``InvalidMessage(InvalidContentType)``, a fatal alert) for
``gs://`` and ``az://``, and Python's ``ssl`` (``SSLCertVerificationError``,
``CERTIFICATE_VERIFY_FAILED``, ``WRONG_VERSION_NUMBER``) for ``s3://``
(botocore) and ``https://`` import sources (:mod:`pgjobs.poller.https`, which
words a refused certificate as rustls did). A TLS failure that is not in this list
(a reset during the handshake) stays transient.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pgjobs.lazy import lazy_module

if TYPE_CHECKING:
    import ssl
else:
    ssl = lazy_module("ssl")  # read on a failure only: `--help` does not load TLS

TLS_HINT = ("the server's TLS certificate is not trusted by the worker: give the worker "
            "the certificate of the authority that signed it (SSL_CERT_FILE=/path/ca.pem, "
            "or install it in the system's trust store), or fix the server's certificate "
            "(expired? issued for another host name?); if the server speaks plain HTTP, "
            "use an http:// endpoint")

# rustls's certificate and protocol errors (as printed in obstore's debug text),
# and OpenSSL's (as printed by Python's ssl module through botocore/urllib3).
_RUSTLS_CERT = re.compile(
    r"InvalidCertificate\(\s*(?:Other\(\s*OtherError\(\s*)?([A-Za-z]+)")
_RUSTLS_OTHER = re.compile(
    r"\b(InvalidContentType|PeerIncompatible|NoCertificatesPresented|UnsupportedNameType|"
    r"AlertReceived\(\s*(?:HandshakeFailure|BadCertificate|UnsupportedCertificate|"
    r"CertificateExpired|CertificateUnknown|UnknownCA|ProtocolVersion|"
    r"InsufficientSecurity|AccessDenied))")
_OPENSSL = re.compile(
    r"CERTIFICATE_VERIFY_FAILED|certificate verify failed[^'\"\n)]*|WRONG_VERSION_NUMBER|"
    r"TLSV1_ALERT_UNKNOWN_CA|SSLV3_ALERT_BAD_CERTIFICATE|SSLV3_ALERT_HANDSHAKE_FAILURE|"
    r"UNSUPPORTED_PROTOCOL|hostname mismatch[^'\"\n)]*|doesn't match[^'\"\n)]*",
    re.IGNORECASE)


URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]*", re.IGNORECASE)
"""A URL in an error's text (it names the object: taken out before the text
is read for what failed)."""


def permanent_tls_error(exc: BaseException) -> str | None:
    """A short description of the permanent TLS failure behind ``exc`` (its chain
    of causes included), or None when there is none."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    texts: list[str] = []
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {current.verify_message or current.reason}"
        texts.append(str(current))
        # Causes, and what botocore keeps aside (SSLError(error=...)).
        inner = [current.__cause__, current.__context__,
                 getattr(current, "kwargs", {}).get("error")
                 if isinstance(getattr(current, "kwargs", None), dict) else None,
                 *getattr(current, "args", ())]
        stack.extend(x for x in inner if isinstance(x, BaseException))
    # Without the URLs it names: an object's path (a key under
    # `CERTIFICATE_VERIFY_FAILED/`) is no TLS failure.
    text = URL.sub(" ", "\n".join(texts))
    match = _RUSTLS_CERT.search(text)
    if match:
        return f"invalid certificate ({match.group(1)})"
    match = _RUSTLS_OTHER.search(text)
    if match:
        name = re.sub(r"\s+", "", match.group(1))
        if name == "InvalidContentType":
            return "the server did not answer in TLS (InvalidContentType): is it plain HTTP?"
        return f"TLS handshake refused ({name})"
    match = _OPENSSL.search(text)
    if match:
        if match.group(0).upper() == "WRONG_VERSION_NUMBER":  # OpenSSL read "HTTP/1.x ..."
            return "the server did not answer in TLS (WRONG_VERSION_NUMBER): is it plain HTTP?"
        return match.group(0).strip()
    return None
