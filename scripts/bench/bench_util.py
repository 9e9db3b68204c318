"""Small helpers for scripts/bench-ingest: logging, child processes, CPU time."""

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time

PROG = "bench-ingest"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def log(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def die(msg):
    raise BenchError(msg)


def _child_setup():
    # Die with the benchmark: a receiver must never outlive this script,
    # even if the script itself is killed with SIGKILL.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(cmd, log_path, env, cwd=None):
    """Starts cmd in its own process group, output to log_path."""
    with open(log_path, "ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, start_new_session=True, preexec_fn=_child_setup)


def stop(proc, timeout, group=False):
    """SIGTERM (to the process group if group), wait; SIGKILL after timeout.

    Returns (exit status, True if it stopped on SIGTERM within timeout)."""
    if proc.poll() is not None:
        return proc.returncode, True
    _signal(proc, signal.SIGTERM, group)
    try:
        proc.wait(timeout=timeout)
        clean = True
    except subprocess.TimeoutExpired:
        _signal(proc, signal.SIGKILL, group)
        proc.wait()
        clean = False
    if group:
        # Forked children (storescp --fork) of the group that outlived their parent.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.returncode, clean


def _signal(proc, sig, group):
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass


def group_cpu_seconds(pgid):
    """User + system CPU of every process in a process group, plus its reaped children."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is field 3 (state): pgrp is field 5, utime..cstime fields 14..17.
        if int(fields[2]) == pgid:
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / _CLK_TCK


_DCMTK = {}


def dcmtk(name):
    """Absolute path of DCMTK's tool `name`.

    pynetdicom installs Python scripts with the same names (echoscu, storescu,
    storescp, ...) that can come first on PATH (e.g. as pyenv shims); only a
    program whose --version mentions dcmtk counts."""
    if name not in _DCMTK:
        for d in os.get_exec_path():
            cand = os.path.join(d, name)
            if not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
                continue
            try:
                out = subprocess.run([cand, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, timeout=10, check=False).stdout
            except (OSError, subprocess.TimeoutExpired):
                continue
            if "dcmtk" in out.lower():
                _DCMTK[name] = os.path.abspath(cand)
                break
        else:
            die(f"DCMTK's {name} not found on PATH (same-named pynetdicom scripts do not count): "
                "apt-get install -y dcmtk")
    return _DCMTK[name]


def system_busy_seconds():
    """CPU time the whole machine spent busy (all cores, hypervisor steal included)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()
    # cpu user nice system idle iowait irq softirq steal ...
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8)) / _CLK_TCK


def port_in_use(port, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


_THEIR_PDU = re.compile(r"Their Max PDU Receive Size:\s*(\d+)")


def wait_echo(proc, ae_title, port, env, timeout, log_path):
    """Polls echoscu until the receiver answers. Returns the receiver's max PDU (or None)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            die(f"receiver exited with status {proc.returncode} before answering C-ECHO; "
                f"log {log_path}:\n{tail(log_path)}")
        try:
            r = subprocess.run([dcmtk("echoscu"), "-d", "-to", "5", "-aet", "BENCH", "-aec", ae_title,
                                "127.0.0.1", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=15, check=False)
            if r.returncode == 0:
                sizes = _THEIR_PDU.findall(r.stdout)
                nonzero = [int(s) for s in sizes if int(s) > 0]
                return nonzero[-1] if nonzero else None
            last = r.stdout.strip().splitlines()[-1:] or [""]
            last = last[0]
        except subprocess.TimeoutExpired:
            last = "echoscu timed out"
        time.sleep(0.2)
    die(f"receiver did not answer C-ECHO within {timeout} s (last: {last}); "
        f"log {log_path}:\n{tail(log_path)}")


def tail(path, lines=15):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return "(no log)"


def loadavg():
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def fs_type(path):
    """File system type of the mount holding path (from /proc/mounts)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    with open("/proc/mounts", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1].replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, parts[2]
    return kind
