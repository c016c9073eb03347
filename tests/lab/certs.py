"""Test certificates made with the openssl CLI: a test CA and the leaf certificates that
exercise every TLS verdict (valid, expired, expiring soon, wrong host name, self-signed).

Leaves are signed with ``openssl ca``, because it is the one OpenSSL 3.0 command that sets
any validity window (``-startdate``/``-enddate``); ``x509 -days`` cannot go into the past
and ``-not_after`` needs OpenSSL 3.4. EC P-256 keys keep generation instant.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

VALID_NAMES = ("localhost", "site.test", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertPair:
    cert: Path  # PEM, the leaf only (the CA is the trust anchor itself)
    key: Path
    not_after: datetime

    @property
    def day(self) -> str:
        return self.not_after.strftime("%Y-%m-%d")


@dataclass(frozen=True)
class LabCerts:
    ca: Path  # the test CA's certificate: pass it as Settings.ca_file
    valid: CertPair  # localhost, site.test, 127.0.0.1, ::1; good for 30 days
    expired: CertPair  # same names, signed by the CA, ended 10 days ago
    expiring: CertPair  # same names, ends in 5 days
    wrong_host: CertPair  # only other.test
    self_signed: CertPair  # same names as valid, but signed by itself


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.skip("openssl is not installed (run scripts/install-test-servers)")
    done = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")


def _san(names: tuple[str, ...]) -> str:
    entries = []
    for name in names:
        is_ip = name.replace(".", "").isdigit() or ":" in name
        entries.append(f"IP:{name}" if is_ip else f"DNS:{name}")
    return "subjectAltName=" + ",".join(entries)


_CA_CONFIG = """
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[ anything ]
commonName = supplied
"""


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%SZ")


def make_test_certs(directory: Path) -> LabCerts:
    """Create the test CA and every leaf in ``directory`` (takes a fraction of a second)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "issued").mkdir(exist_ok=True)
    (directory / "index.txt").write_text("")
    (directory / "serial").write_text("1000\n")
    (directory / "ca.cnf").write_text(_CA_CONFIG.format(dir=directory))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-days", "60", "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", "/O=badgateway tests/CN=badgateway test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    now = datetime.now(UTC).replace(microsecond=0)

    def leaf(stem: str, names: tuple[str, ...], start: datetime, end: datetime) -> CertPair:
        (directory / f"{stem}.ext").write_text(
            "[ leaf ]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
            + _san(names)
            + "\n"
        )
        _openssl(
            "req", "-new", *ec, "-keyout", f"{stem}.key", "-out", f"{stem}.csr",
            "-subj", f"/CN={names[0]}", cwd=directory,
        )  # fmt: skip
        _openssl(
            "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
            "-in", f"{stem}.csr", "-out", f"{stem}.pem", "-notext",
            "-startdate", _stamp(start), "-enddate", _stamp(end),
            "-extfile", f"{stem}.ext", "-extensions", "leaf",
            cwd=directory,
        )  # fmt: skip
        return CertPair(directory / f"{stem}.pem", directory / f"{stem}.key", end)

    valid = leaf("valid", VALID_NAMES, now - timedelta(days=1), now + timedelta(days=30))
    expired = leaf("expired", VALID_NAMES, now - timedelta(days=40), now - timedelta(days=10))
    expiring = leaf("expiring", VALID_NAMES, now - timedelta(days=1), now + timedelta(days=5))
    wrong = leaf("wrong-host", ("other.test",), now - timedelta(days=1), now + timedelta(days=30))
    self_end = now + timedelta(days=30)
    _openssl(
        "req", "-x509", *ec, "-days", "30", "-keyout", "self-signed.key",
        "-out", "self-signed.pem", "-subj", "/CN=localhost",
        "-addext", _san(VALID_NAMES), cwd=directory,
    )  # fmt: skip
    self_signed = CertPair(directory / "self-signed.pem", directory / "self-signed.key", self_end)
    return LabCerts(directory / "ca.pem", valid, expired, expiring, wrong, self_signed)


class TlsServer:
    """A real TLS server on loopback (Python's ssl in a thread) for handshake tests.

    It completes the handshake with ``pair``, records the SNI name each client sent, answers
    one line of HTTP and closes. nginx serves the certificates in the end-to-end tests; this
    one is for the many small handshake cases, where TLS itself is what is under test.
    """

    def __init__(self, pair: CertPair, host: str = "127.0.0.1") -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pair.cert, pair.key)
        self.server_names: list[str | None] = []
        self.context.sni_callback = self._record_sni
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"tls-{self.port}", daemon=True)
        self._thread.start()

    def _record_sni(
        self, _sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: object
    ) -> None:
        self.server_names.append(name)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError), conn:
                conn.settimeout(2.0)
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1024)
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
                    )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> TlsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PlainHttpServer:
    """A plain-HTTP port that answers anything, TLS hellos included, with 400 at once —
    what nginx does when a TLS client dials its plain port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._sock.bind((host, 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self.address = f"{host}:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError), conn:
                conn.settimeout(2.0)
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> PlainHttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
