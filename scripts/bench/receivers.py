"""The three C-STORE receivers scripts/bench-ingest compares."""

import json
import os
import shutil
import subprocess
import time
import urllib.request

from bench_util import dcmtk, die, port_in_use, spawn, stop, tail, wait_echo

HERE = os.path.dirname(os.path.abspath(__file__))


class Receiver:
    key = ""
    label = ""
    ae_title = ""
    group = False  # signal the whole process group (forking servers)
    exits_zero = True  # exit status 0 after SIGTERM expected

    def __init__(self, env, ready_timeout):
        self.env = env
        self.ready_timeout = ready_timeout
        self.proc = None
        self.log_path = None
        self.max_pdu = None

    def ports(self):
        return [self.port]

    def start(self, run_dir):
        for p in self.ports():
            if port_in_use(p):
                die(f"{self.label}: port {p} on 127.0.0.1 is already in use; pick another (see --help)")
        self.log_path = os.path.join(run_dir, f"{self.key}.log")
        self.proc = spawn(self.command(run_dir), self.log_path, self.env, cwd=run_dir)
        self.max_pdu = wait_echo(self.proc, self.ae_title, self.port, self.env, self.ready_timeout,
                                 self.log_path)
        self.after_ready()

    def after_ready(self):
        pass

    def stop(self):
        """Stops the receiver. Returns an error message or None."""
        if self.proc is None:
            return None
        status, clean = stop(self.proc, timeout=60, group=self.group)
        self.proc = None
        if not clean:
            return f"{self.label} did not stop within 60 s of SIGTERM (killed)"
        if self.exits_zero and status != 0:
            return f"{self.label} exited with status {status} after SIGTERM; log {self.log_path}"
        return None

    def kill(self):
        if self.proc is not None:
            stop(self.proc, timeout=10, group=True)
            self.proc = None


class Storescp(Receiver):
    key = "storescp"
    label = "DCMTK storescp"
    ae_title = "STORESCP"
    group = True
    exits_zero = False  # no SIGTERM handler: it dies of the signal

    def __init__(self, env, ready_timeout, port):
        super().__init__(env, ready_timeout)
        self.port = port
        self.out_dir = None

    def command(self, run_dir):
        self.out_dir = os.path.join(run_dir, "storescp")
        os.makedirs(self.out_dir)
        # --fork: one child process per association, so 4 associations run at once.
        return [dcmtk("storescp"), "--fork", "-dhl", "-aet", self.ae_title, "-od", self.out_dir, str(self.port)]

    def count_before_stop(self):
        n = 0
        for _root, _dirs, names in os.walk(self.out_dir):
            n += len(names)
        return n

    def count_after_stop(self, run_dir):
        return None


class Orthanc(Receiver):
    key = "orthanc"
    label = "Orthanc"
    ae_title = "ORTHANC"

    def __init__(self, env, ready_timeout, port, http_port, extra_config=None, storage=None):
        """extra_config: settings added to (or replacing) orthanc.json.in's; storage: a
        directory kept across starts (default: a fresh run_dir/orthanc, which must be empty)."""
        super().__init__(env, ready_timeout)
        self.port = port
        self.http_port = http_port
        self.extra_config = extra_config or {}
        self.storage = storage

    def ports(self):
        return [self.port, self.http_port]

    def command(self, run_dir):
        storage = self.storage or os.path.join(run_dir, "orthanc")
        os.makedirs(storage, exist_ok=self.storage is not None)
        with open(os.path.join(HERE, "orthanc.json.in"), encoding="utf-8") as f:
            config = f.read()
        for name, value in {
            "STORAGE_DIR": json.dumps(storage),
            "INDEX_DIR": json.dumps(storage),
            "HTTP_PORT": str(self.http_port),
            "DICOM_PORT": str(self.port),
            "AE_TITLE": json.dumps(self.ae_title),
        }.items():
            config = config.replace(f"@{name}@", value)
        parsed = json.loads(config)  # fail early on a broken template
        if self.extra_config:
            parsed.update(self.extra_config)
            config = json.dumps(parsed, indent=2)
        path = os.path.join(run_dir, "orthanc.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(config)
        return [shutil.which("Orthanc") or "Orthanc", path]

    def statistics(self):
        url = f"http://127.0.0.1:{self.http_port}/statistics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)

    def after_ready(self):
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                stats = self.statistics()
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    die(f"Orthanc REST API on port {self.http_port} not answering: {e}; "
                        f"log {self.log_path}:\n{tail(self.log_path)}")
                time.sleep(0.2)
        if self.storage is None and stats.get("CountInstances") != 0:
            die(f"Orthanc storage is not empty at start: {stats}")

    def count_before_stop(self):
        return int(self.statistics()["CountInstances"])

    def count_after_stop(self, run_dir):
        return None


class Radhub(Receiver):
    key = "radhub"
    label = "radhub (durable)"
    ae_title = "RADHUB"

    def __init__(self, env, ready_timeout, port, binary):
        super().__init__(env, ready_timeout)
        self.port = port
        self.binary = binary

    def command(self, run_dir):
        self.data = os.path.join(run_dir, "hub")
        return [self.binary, "--data", self.data, "serve", "--ae-title", self.ae_title,
                "--dicom-bind", f"127.0.0.1:{self.port}", "--accept-any"]

    def count_before_stop(self):
        return None

    def count_after_stop(self, run_dir):
        r = subprocess.run([self.binary, "--data", self.data, "stats", "--json"], env=self.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
        if r.returncode != 0:
            die(f"radhub stats --json failed ({r.returncode}): {r.stderr.strip()[:500]}")
        return int(json.loads(r.stdout)["total"]["instances"])

    @staticmethod
    def serve_available(binary):
        if binary is None or not os.access(binary, os.X_OK):
            return False
        r = subprocess.run([binary, "serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, check=False)
        return r.returncode == 0 and "--dicom-bind" in r.stdout
