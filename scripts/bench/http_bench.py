"""The two DICOMweb servers scripts/bench-http compares, and its HTTP client."""

import concurrent.futures
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time

from bench_util import die, log, port_in_use, spawn, stop, tail
from receivers import Orthanc

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
ACCEPT_JSON = "application/dicom+json"


class Client:
    """One keep-alive HTTP/1.1 connection; times each request to the last byte of the answer.

    fresh() opens a new connection outside any timing: Orthanc (civetweb) closes
    a keep-alive connection after a short idle time, and the servers take turns.
    A connection the server closes during a block is re-opened inside the timing
    (counted in reopened); a request that fails on a reused connection before any
    answer is sent again once, as HTTP clients do for GET."""

    RETRY = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)

    def __init__(self, port, root, headers=None, timeout=300):
        self.port = port
        self.root = root.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.conn = None
        self.reopened = 0

    def fresh(self):
        self.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, url, accept, extra=None):
        if self.conn is None or self.conn.sock is None:
            self.fresh()
            self.reopened += 1
        # No Accept-Encoding at all: Orthanc would gzip for a client that asks.
        self.conn.putrequest("GET", url, skip_accept_encoding=True)
        self.conn.putheader("Accept", accept)
        for name, value in {**self.headers, **(extra or {})}.items():
            self.conn.putheader(name, value)
        self.conn.endheaders()
        return self.conn.getresponse()

    def get(self, path, accept=ACCEPT_JSON, extra=None):
        """(seconds, status, body). Raises OSError / http.client errors on a broken connection."""
        url = self.root + path
        t0 = time.perf_counter()
        try:
            resp = self._send(url, accept, extra)
        except self.RETRY:
            self.close()
            resp = self._send(url, accept, extra)
        body = resp.read()
        secs = time.perf_counter() - t0
        if resp.getheader("Content-Encoding", "identity") not in ("identity", ""):
            die(f"{url}: answer has Content-Encoding {resp.getheader('Content-Encoding')}")
        if resp.will_close:
            self.close()
        return secs, resp.status, body

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class OrthancWeb(Orthanc):
    """Orthanc with the DICOMweb plugin, storage kept across restarts."""
    label = "Orthanc + DICOMweb"

    def __init__(self, env, ready_timeout, dicom_port, http_port, storage, overrides=None):
        extra = {
            "Name": "radhub-bench-http",
            # Only makes the load faster; reads are the same.
            "SyncStorageArea": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True,
                         # PatientName matching case-insensitive, as radhub's.
                         "QidoCaseSensitive": False},
            "KeepAlive": True,
            "TcpNoDelay": True,
        }
        extra.update(overrides or {})
        super().__init__(env, ready_timeout, dicom_port, http_port, extra_config=extra, storage=storage)
        self.web_port = http_port
        self.root = "/dicom-web"
        self.headers = {}

    def rest(self, path):
        c = Client(self.http_port, "")
        try:
            secs, status, body = c.get(path, accept="application/json")
        finally:
            c.close()
        if status != 200:
            die(f"Orthanc GET {path}: HTTP {status}: {body[:300]!r}")
        return json.loads(body)

    def plugin_version(self):
        try:
            return self.rest("/plugins/dicom-web").get("Version", "?")
        except Exception:  # noqa: BLE001 - only for the notes
            return "?"

    def load(self, paths, threads=4):
        """POST /instances for every file, `threads` keep-alive connections at once. Returns seconds."""
        local = threading.local()
        done = [0]
        lock = threading.Lock()

        def post(path):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=120)
            with open(path, "rb") as f:
                data = f.read()
            conn.request("POST", "/instances", body=data,
                         headers={"Content-Type": "application/dicom", "Content-Length": str(len(data))})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                die(f"Orthanc POST /instances {path}: HTTP {resp.status}: {body[:300]!r}")
            status = json.loads(body).get("Status")
            if status not in ("Success", "AlreadyStored"):
                die(f"Orthanc POST /instances {path}: status {status}")
            with lock:
                done[0] += 1
                if done[0] % 2000 == 0:
                    log(f"orthanc: {done[0]:,} of {len(paths):,} instances stored")

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for fut in [pool.submit(post, p) for p in paths]:
                fut.result()
        return time.monotonic() - t0

    def count(self):
        return int(self.statistics()["CountInstances"])


class RadhubWeb:
    key = "radhub"
    label = "radhub"
    USER = "bench"
    PASSWORD = "bench-http-password"

    def __init__(self, binary, env, ready_timeout, http_port, dicom_port):
        self.binary = binary
        self.env = env
        self.ready_timeout = ready_timeout
        self.http_port = http_port
        self.dicom_port = dicom_port
        self.web_port = http_port
        self.root = "/dicom-web"
        self.headers = {}
        self.proc = None
        self.data = None
        self.log_path = None
        self.address = None

    @staticmethod
    def unsupported(binary):
        """Why this binary cannot serve the benchmark (None if it can)."""
        if binary is None or not os.access(binary, os.X_OK):
            return f"no radhub binary at {binary}"
        r = subprocess.run([binary, "serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, check=False)
        if r.returncode != 0 or "--http-bind" not in r.stdout:
            return "`radhub serve` has no --http-bind"
        r = subprocess.run([binary, "users", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, check=False)
        if r.returncode != 0:
            return "no `radhub users` subcommand"
        return None

    def _run(self, args, stdin=None, what=None):
        cmd = [self.binary, "--data", self.data] + args
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n")
        r = subprocess.run(cmd, input=stdin, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, check=False)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(r.stdout[-20000:] + r.stderr[-20000:])
        if r.returncode != 0:
            die(f"radhub {what or args[0]} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        return r.stdout

    def load(self, work, folders, expected):
        """radhub import, then an admin user and its token. Returns the import's seconds."""
        self.data = os.path.join(work, "radhub-data")
        self.log_path = os.path.join(work, "radhub.log")
        t0 = time.monotonic()
        self._run(["import", "--site", "RBD"] + folders)
        secs = time.monotonic() - t0
        stats = json.loads(self._run(["stats", "--json"]))
        held = int(stats["total"]["instances"])
        if held != expected:
            die(f"radhub holds {held} instances after the import, expected {expected}")
        self._run(["users", "add", self.USER, "--role", "admin"], stdin=self.PASSWORD + "\n",
                  what="users add")
        out = self._run(["users", "token", self.USER], what="users token")
        token = next((line.strip() for line in out.splitlines() if line.strip()), "")
        if not token or " " in token:
            die(f"radhub users token printed {out.strip()[:200]!r}, expected one token line")
        self.headers = {"Authorization": f"Bearer {token}"}
        return secs

    def start(self, _run_dir=None):
        for p in (self.http_port, self.dicom_port):
            if port_in_use(p):
                die(f"radhub: port {p} on 127.0.0.1 is already in use; pick another (see --help)")
        cmd = [self.binary, "--data", self.data, "serve", "--http-bind", f"127.0.0.1:{self.http_port}",
               "--dicom-bind", f"127.0.0.1:{self.dicom_port}"]
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n")
        self.proc = spawn(cmd, self.log_path, self.env)
        deadline = time.monotonic() + self.ready_timeout
        pattern = re.compile(r"radhub: HTTP listening on (\S+)")
        while True:
            if self.proc.poll() is not None:
                die(f"radhub serve exited with status {self.proc.returncode} before listening; "
                    f"log {self.log_path}:\n{tail(self.log_path)}")
            m = pattern.search(tail(self.log_path, 50))
            if m:
                self.address = m.group(1)
                break
            if time.monotonic() > deadline:
                die(f"radhub serve did not print `radhub: HTTP listening on` within {self.ready_timeout} s; "
                    f"log {self.log_path}:\n{tail(self.log_path)}")
            time.sleep(0.05)

    def stop(self):
        if self.proc is None:
            return None
        status, clean = stop(self.proc, timeout=60)
        self.proc = None
        if not clean:
            return "radhub serve did not stop within 60 s of SIGTERM (killed)"
        if status != 0:
            return f"radhub serve exited with status {status} after SIGTERM; log {self.log_path}"
        return None

    def kill(self):
        if self.proc is not None:
            stop(self.proc, timeout=10, group=True)
            self.proc = None
