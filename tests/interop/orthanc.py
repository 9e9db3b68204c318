"""Orthanc's REST API for tests/interop_orthanc.rs (standard library only).

    orthanc.py wait URL SECONDS            poll GET /system until Orthanc answers
    orthanc.py METHOD URL [BODY]           one request; BODY is JSON text or @FILE

Prints one JSON object: {"status": HTTP status, "body": the answer, parsed as
JSON where it is JSON, else as text}. Exits 0 whatever the HTTP status, so
that the Rust test asserts on it; non-zero only when Orthanc is unreachable.
"""

import json
import sys
import time
import urllib.error
import urllib.request


def request(method, url, body=None, content_type=None):
    req = urllib.request.Request(url, data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = text
    return {"status": status, "body": parsed}


def wait(url, seconds):
    deadline = time.monotonic() + seconds
    while True:
        try:
            r = request("GET", url.rstrip("/") + "/system")
            if r["status"] == 200:
                return r
        except OSError as e:  # not listening yet
            last = e
        if time.monotonic() > deadline:
            sys.exit(f"Orthanc did not answer GET /system within {seconds} s: {last}")
        time.sleep(0.05)


def main():
    if sys.argv[1] == "wait":
        print(json.dumps(wait(sys.argv[2], float(sys.argv[3]))))
        return
    method, url = sys.argv[1], sys.argv[2]
    body, ctype = None, None
    if len(sys.argv) > 3:
        arg = sys.argv[3]
        if arg.startswith("@"):
            with open(arg[1:], "rb") as f:
                body, ctype = f.read(), "application/dicom"
        else:
            body, ctype = arg.encode(), "application/json"
    print(json.dumps(request(method, url, body, ctype)))


if __name__ == "__main__":
    main()
