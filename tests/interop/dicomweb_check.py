"""DICOMweb conformance harness: STOW-RS, WADO-RS and QIDO-RS against radhub.

    dicomweb_check.py --url http://127.0.0.1:PORT/dicom-web [--token TOKEN]
                      [--lenient-orthanc] [--jobs N] FILE_OR_DIR...

dicomweb-client (0.61.2) is the client and pydicom (3.0.2) reading each file
is the oracle. Folders are walked recursively, taking the files named *.dcm
and those with the DICM preamble. Each file is stored alone, in sorted path
order; then every stored instance, series and study is retrieved, searched
and compared with pydicom's reading of the file. With --token every request
carries "Authorization: Bearer TOKEN".

Progress and failures go to stderr; stdout gets one JSON object:

    {"stored": [path, ...], "refused": {path: reason}, "checks": N,
     "failures": [text, ...], "notes": [text, ...]}

and the exit status is 0 iff "failures" is empty. "notes" lists what was
skipped on purpose (unaligned 1-bit frames, a transcoding the server
declined with 406/415...).

Expectations (radhub's rules):
- A file pydicom cannot read, or without SOP/Study Instance UID, is refused:
  409 (or 400) with a FailureReason (0008,1197) in a FailedSOPSequence; the
  server may refuse more (malformed files pydicom reads leniently): those are
  listed under "refused", not failed. Nothing of a refused file is visible.
- The first file stored for a SOP Instance UID is the one kept; a later STOW
  of the same UID also answers 200. That first file is "the expected file".
- WADO-RS with transfer-syntax=* returns the expected file byte for byte.
- Metadata equals pydicom's Dataset.to_json_dict: same tags (group lengths
  optional, group 0002 ignored), VRs and values; private tags: UN may stand
  for any VR and values are not compared; binary values inline or by a
  BulkDataURI that retrieves the same bytes (encapsulated Pixel Data: only
  a BulkDataURI is required). Explicit VR big endian files: binary values
  and frames may come back in either byte order (PS3.18 makes little endian
  the default for application/octet-stream).
- QIDO: exact, wildcard (case-insensitive PN), date range and paging
  queries, values percent-encoded (space as %20, and as "+" when sent by
  dicomweb-client, which uses quote_plus).
- Frames, rendered images and thumbnails; 4xx for bad frame numbers,
  unknown UIDs, malformed STOW bodies and paths; 401 without the token.

Orthanc 1.10.1 with its DICOMweb plugin 1.7 (Debian package), used to
validate this harness, deviates from PS3.18 or from radhub's rules as below;
with --lenient-orthanc these checks become notes, and the run is green:
 1. STOW answers 200 (storing nothing) to a multipart body whose boundary
    never occurs or that has no closing delimiter; 400 expected.
 2. STOW stores files without File Meta Information (ExplVR_*NoMeta.dcm,
    rtstruct.dcm): PS3.18 10.5 asks for PS3.10 instances.
 3. STOW refuses with a bare 400, no FailedSOPSequence or FailureReason,
    files it cannot parse or without SOP Instance UID (only a missing Study
    Instance UID gets FailureReason 0xC000); PS3.18 10.5.3 wants 409 and a
    FailedSOPSequence. (It also refuses MR_truncated, rtplan_truncated,
    rtdose_rle*, SC_rgb_jpeg: allowed, listed under "refused".)
 4. Metadata leaves out encapsulated Pixel Data: no BulkDataURI at all.
 5. Metadata of ISO 2022 data sets: the empty first value of Specific
    Character Set is dropped; ISO 2022 IR 87 ideographic/phonetic names are
    mis-decoded (chrH32); under ISO 2022 IR 13 the 0x5C delimiter becomes
    a yen sign (J2K_pixelrep_mismatch: its multi-valued CS/DS are lost).
 6. QIDO gives PatientName from its index: non-Latin names lost or mangled,
    ideographic and phonetic components dropped.
 7. QIDO includefield=all does not return StudyDescription.
 8. QIDO query values are not percent-decoded ("%5E", "%20", "%2A", UTF-8
    escapes match literally): lenient wildcard prefixes are plain ASCII
    letters and digits with "*" sent as is; exact PatientName is skipped.
 9. No /thumbnail resources (404).
10. Frames of Explicit VR Big Endian and Deflated instances: 500, also for
    frame numbers out of range.
11. No JPEG 2000 decoder: rendered 400, frames decoded to Explicit VR Little
    Endian 500.
Not Orthanc's: dicomweb-client sends "Host: 127.0.0.1" without the port, so
absolute BulkDataURIs built from Host point at port 80; Server() below makes
it send host:port.
"""

import argparse
import array
import base64
import io
import json
import logging
import math
import os
import sys
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import quote, quote_plus, urljoin, urlparse

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)  # dicomweb-client logs every HTTP error

DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'
OCTETS_ANY = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
DICOM_JSON = "application/dicom+json"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
ANY_TS = (("application/dicom", "*"),)
MISMATCHES_SHOWN = 6  # per file and metadata level

# Binary VRs and the word size byte order applies to.
BINARY_VRS = {"OB": 1, "UN": 1, "OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
NUMBER_VRS = {"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"}
# Text VRs whose leading spaces are not significant either (PS3.5 6.2).
TRIM_LEADING = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH", "TM", "UI"}

# Rendering needs pixel data of one or three samples. Files whose pixel
# data radhub's decoders are known not to handle (--known-render-failures,
# radhub's tests/render/failures.tsv) must be refused with a 4xx, not fail
# the run: the render suite tracks them.
RENDER_SKIP = {}


def load_render_skip(path):
    for line in open(path, encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            name, why = (line.rstrip("\n").split("\t") + [""])[:2]
            RENDER_SKIP[name] = why


def declined(e):
    """A 4xx answer: the server refused cleanly rather than failing."""
    r = getattr(e, "response", None)
    return r is not None and 400 <= r.status_code < 500

# Transfer syntaxes Orthanc 1.10.1 (Debian package, no GDCM plugin) cannot
# decode (JPEG 2000), or whose frames it cannot cut (big endian, deflated).
ORTHANC_NO_DECODE = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}
ORTHANC_NO_FRAMES = {BIG_ENDIAN, "1.2.840.10008.1.2.1.99"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def explain(e):
    """An exception as one line; HTTP errors with their status and body."""
    if isinstance(e, requests.HTTPError) and e.response is not None:
        body = " ".join(e.response.text.split())[:200]
        return f"HTTP {e.response.status_code} {body}".strip()
    return f"{type(e).__name__}: {e}"[:300]


class Report:
    """Counts checks, collects failures (the verdict) and notes (skips)."""

    def __init__(self, lenient=False):
        self.checks, self.failures, self.notes = 0, [], []
        self.lenient = lenient
        self._lock = threading.Lock()

    def check(self, ok, msg):
        with self._lock:
            self.checks += 1
        if not ok:
            self.fail(msg)
        return bool(ok)

    def fail(self, msg):
        log("FAIL " + msg)
        with self._lock:
            self.failures.append(msg)

    def tally(self, n=1):
        """Counts checks whose failures are reported one by one."""
        with self._lock:
            self.checks += n

    def note(self, msg):
        with self._lock:
            self.notes.append(msg)

    def orthanc(self, ok, msg):
        """A check Orthanc is known to fail: a note under --lenient-orthanc."""
        if ok or not self.lenient:
            return self.check(ok, msg)
        self.note("lenient-orthanc: " + msg)
        return False

    @contextmanager
    def guard(self, what, orthanc=False):
        """Runs a block as a check: an exception fails it, and the run goes
        on; with orthanc=True, a known Orthanc deviation (see orthanc())."""
        try:
            yield
        except Exception as e:
            if orthanc:
                self.orthanc(False, f"{what}: {explain(e)}")
            else:
                with self._lock:
                    self.checks += 1
                self.fail(f"{what}: {explain(e)}")


# ---------------------------------------------------------------- oracle


def expand(paths):
    """Files as given, and under folders the *.dcm and DICM files, sorted."""
    files = []
    for p in paths:
        if not os.path.isdir(p):
            files.append(p)
            continue
        for root, _, names in os.walk(p):
            for n in names:
                f = os.path.join(root, n)
                if n.lower().endswith(".dcm"):
                    files.append(f)
                else:
                    with open(f, "rb") as fh:
                        if fh.read(132)[128:] == b"DICM":
                            files.append(f)
    return sorted(files)


class Oracle:
    """pydicom's reading of one file, and what the server should make of it."""

    def __init__(self, path, root):
        self.path = path
        self.name = os.path.relpath(path, root)  # shorter, for messages
        with open(path, "rb") as f:
            self.raw = f.read()
        self.ds, self.why_refused, self._json = None, None, None
        try:
            self.ds = pydicom.dcmread(io.BytesIO(self.raw))
        except Exception as e:
            self.why_refused = f"pydicom cannot read it ({type(e).__name__})"
        self.sop, self.sop_class, self.study, self.series = (self.uid(k) for k in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"))
        meta = getattr(self.ds, "file_meta", None)
        self.ts = UID(str(meta.get("TransferSyntaxUID", "") or "")) if meta is not None else UID("")
        if self.ds is not None and not self.sop:
            self.why_refused = "no SOP Instance UID"
        elif self.ds is not None and not self.study:
            self.why_refused = "no Study Instance UID"

    def uid(self, keyword):
        try:
            return str(self.ds.get(keyword, "") or "").strip("\0 ") if self.ds is not None else ""
        except Exception:
            return ""

    def int(self, keyword, default=None):
        try:
            v = self.ds.get(keyword)
            return default if v is None or v == "" else int(v)
        except Exception:
            return None

    @property
    def charset(self):
        v = self.ds.get("SpecificCharacterSet") if self.ds is not None else None
        return v if isinstance(v, str) else "\\".join(map(str, v or []))

    @property
    def big_endian(self):
        return self.ts == BIG_ENDIAN

    @property
    def encapsulated(self):
        return bool(self.ts) and self.ts.is_encapsulated

    def json(self):
        if self._json is None:
            self._json = oracle_json(self.ds)
        return self._json

    def pixels(self):
        """(rows, columns, samples, bits allocated, frames), or None with why."""
        if self.ds is None or "PixelData" not in self.ds:
            return None, "no Pixel Data"
        v = [self.int(k) for k in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated")] + [self.int("NumberOfFrames", 1)]
        if None in v or 0 in v:
            return None, "pixel module not readable by pydicom"
        return tuple(v), None


def oracle_json(ds):
    """pydicom's DICOM JSON of a data set, element by element, so that an
    element pydicom cannot convert is marked "skip" instead of failing all."""
    out = {}
    for tag in ds.keys():
        key = f"{int(tag):08X}"
        if tag >> 16 == 0x0002:
            continue
        try:
            elem = ds[tag]
        except Exception:
            out[key] = {"vr": None, "skip": True}
            continue
        try:
            if elem.VR == "SQ":
                out[key] = {"vr": "SQ", "Value": [oracle_json(item) for item in elem.value]}
            else:
                out[key] = elem.to_json_dict(None, 0)
        except Exception:
            out[key] = {"vr": elem.VR, "skip": True}
    return out


# ---------------------------------------------------------------- HTTP


def media_type(value):
    """("type/subtype", {param: value}) of a Content-Type header."""
    parts = [p.strip() for p in (value or "").split(";")]
    params = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        params[k.strip().lower()] = v.strip().strip('"')
    return parts[0].lower(), params


def multipart_parts(resp):
    """[(part headers, part body)] of a multipart/related response; a
    malformed one (no boundary, no closing delimiter) raises ValueError."""
    mtype, params = media_type(resp.headers.get("Content-Type"))
    if mtype != "multipart/related":
        raise ValueError(f"Content-Type {resp.headers.get('Content-Type')!r}, expected multipart/related")
    boundary = params.get("boundary")
    if not boundary:
        raise ValueError("multipart/related without a boundary")
    chunks = (b"\r\n" + resp.content).split(b"\r\n--" + boundary.encode())
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            return parts
        head, sep, body = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a part without an empty line after its headers")
        headers = {}
        for line in head.split(b"\r\n"):
            k, _, v = line.decode("latin-1").partition(":")
            if k.strip():
                headers[k.strip().lower()] = v.strip()
        parts.append((headers, body))
    raise ValueError("multipart body without a closing delimiter")


def stow_body(raw, boundary):
    return f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + raw + f"\r\n--{boundary}--\r\n".encode()


def stow_type(boundary):
    return f'multipart/related; type="application/dicom"; boundary={boundary}'


class Server:
    """The DICOMweb service: dicomweb-client, plus raw requests for what the
    client does not expose (the bytes of multipart parts, statuses)."""

    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = requests.Session()
        self.http.headers.update(self.auth)
        self.client = DICOMwebClient(self.url, headers=dict(self.auth) or None, permissive_uid=True, timeout=60)
        self.client.set_http_retry_params(retry=False)
        # dicomweb-client sends "Host: 127.0.0.1", without the port, so a
        # server building absolute BulkDataURIs from Host points them at
        # port 80; send the real host:port instead.
        self.client.host = urlparse(self.url).netloc

    def full(self, path):
        return path if path.startswith("http") else self.url + path

    def get(self, path, accept, headers=None):
        h = {"Accept": accept} if headers is None else headers
        return self.http.get(self.full(path), headers=h, timeout=60)

    def post(self, path, body, content_type, headers=None):
        h = {"Content-Type": content_type, "Accept": DICOM_JSON} if headers is None else headers
        return self.http.post(self.full(path), data=body, headers=h, timeout=60)

    def qido(self, path, query):
        """A QIDO-RS search with a query string built (and encoded) by us."""
        r = self.get(f"{path}?{query}", DICOM_JSON)
        r.raise_for_status()
        return r.json() if r.content.strip() else []


# ---------------------------------------------------------------- DICOM JSON


def values(js, key):
    """The Value list of an element in a DICOM JSON object ([] if none)."""
    elem = (js or {}).get(key) or {}
    return elem.get("Value") or []


def first(js, key):
    v = values(js, key)
    return v[0] if v else None


def tag_name(path):
    """ "00081111[0].00081150" -> "...ReferencedSOPClassUID (0008,1150)" """
    last = path.rsplit(".", 1)[-1]
    try:
        kw = keyword_for_tag(int(last, 16)) or "private/unknown"
    except ValueError:
        kw = "?"
    return f"{path} {kw}"


def short(v, n=80):
    s = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v
    return s if len(s) <= n else s[:n] + "..."


def norm_text(v, vr):
    s = "" if v is None else str(v)
    s = s.rstrip(" \0")
    return s.lstrip(" ") if vr in TRIM_LEADING else s


def norm_values(elem, vr):
    """An element's values as comparable Python values; [] when all empty."""
    vals = list((elem or {}).get("Value") or [])
    if vr == "PN":
        out = []
        for v in vals:
            v = v if isinstance(v, dict) else {"Alphabetic": v}
            # Trailing empty name components ("OB^^^^" = "OB") mean nothing (PS3.5 6.2.1).
            comps = [norm_text(v.get(c), "PN").rstrip("^ ") for c in ("Alphabetic", "Ideographic", "Phonetic")]
            while comps and comps[-1] == "":
                comps.pop()
            out.append(tuple(comps))
        vals = out
    elif vr == "AT":
        vals = [str(v).upper() for v in vals]
    elif vr not in NUMBER_VRS:
        vals = [norm_text(v, vr) for v in vals]
    if all(v in (None, "", ()) for v in vals):
        return []
    return vals


def as_number(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def numbers_equal(a, b):
    x, y = as_number(a), as_number(b)
    if x is None or y is None:
        return True  # a value pydicom (or the server) cannot convert: skipped
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return abs(x - y) <= 1e-6 * max(1.0, abs(x), abs(y))


def swapped(data, width):
    codes = {2: "H", 4: "I", 8: "Q"}
    if width not in codes or len(data) % width:
        return None
    a = array.array(codes[width], data)
    a.byteswap()
    return a.tobytes()


def bytes_match(got, exp, widths=()):
    """Equal, or equal once byte-swapped by one of widths (big endian files)."""
    return got == exp or any(got == swapped(exp, w) for w in widths if w > 1)


def diff_at(a, b):
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"{len(a)} bytes, expected {len(b)}, first difference at byte {i}"


def compare_ds(o, exp, got, where, mism, bulk):
    """Appends (where, expected, got) to mism for each difference between
    pydicom's JSON exp and the server's got; binary values the server gives
    by BulkDataURI go to bulk as (where, uri, expected bytes, byte widths)."""
    for key in sorted(set(exp) | set(got)):
        group, element = int(key[:4], 16), int(key[4:], 16)
        if group == 0x0002 or element == 0:
            continue  # file meta; group lengths are optional in DICOM JSON
        if not where and key == "00083002":
            continue  # Available Transfer Syntax UID: the server's, not the file's
        e, g, path = exp.get(key), got.get(key), where + key
        if e is None:
            mism.append((path, "absent", short(g)))
            continue
        if e.get("vr") is None:
            continue  # pydicom cannot read this element at all
        if g is None:
            mism.append((path, short(e), "absent"))
            continue
        evr, gvr = e["vr"], g.get("vr")
        if group % 2 == 1 or evr == "UN":
            if gvr != evr and "UN" not in (evr, gvr) and gvr not in evr.split(" or "):
                mism.append((path, f"VR {evr}", f"VR {gvr}"))
            continue  # private (or unknown to pydicom): values not compared
        if gvr not in evr.split(" or "):
            mism.append((path, f"VR {evr}", f"VR {gvr}"))
            continue
        if e.get("skip"):
            continue  # a value pydicom cannot convert
        if gvr == "SQ":
            ei, gi = e.get("Value") or [], g.get("Value") or []
            if len(ei) != len(gi):
                mism.append((path, f"{len(ei)} items", f"{len(gi)} items"))
            for i, (a, b) in enumerate(zip(ei, gi)):
                compare_ds(o, a, b if isinstance(b, dict) else {}, f"{path}[{i}].", mism, bulk)
        elif gvr in BINARY_VRS:
            compare_binary(o, key, path, gvr, e, g, mism, bulk)
        elif gvr in NUMBER_VRS:
            ev, gv = norm_values(e, gvr), norm_values(g, gvr)
            if len(ev) != len(gv) or not all(numbers_equal(a, b) for a, b in zip(ev, gv)):
                mism.append((path, short(ev), short(gv)))
        else:
            ev, gv = norm_values(e, gvr), norm_values(g, gvr)
            if ev != gv:
                mism.append((path, short(ev), short(gv)))


def compare_binary(o, key, path, vr, e, g, mism, bulk):
    exp = base64.b64decode(e.get("InlineBinary", ""))
    widths = (BINARY_VRS[vr],) if o.big_endian else ()
    if path == "7FE00010" and o.big_endian:
        widths += (max(1, (o.int("BitsAllocated") or 8) // 8),)
    if path == "7FE00010" and o.encapsulated:
        if "BulkDataURI" not in g:
            mism.append((path, "a BulkDataURI (encapsulated Pixel Data)", short(sorted(g))))
        return
    if "BulkDataURI" in g:
        bulk.append((path, g["BulkDataURI"], exp, widths))
    elif "InlineBinary" in g:
        got = base64.b64decode(g["InlineBinary"])
        if not bytes_match(got, exp, widths):
            mism.append((path, f"{len(exp)} bytes", diff_at(got, exp)))
    elif exp:
        mism.append((path, f"{len(exp)} bytes", "no InlineBinary nor BulkDataURI"))


def compare_metadata(srv, rep, o, got, level, base=None):
    """Checks one instance's metadata; with base (the URL it came from),
    also retrieves its BulkDataURIs."""
    mism, bulk = [], []
    compare_ds(o, o.json(), got if isinstance(got, dict) else {}, "", mism, bulk)
    if rep.lenient:  # Orthanc omits encapsulated Pixel Data, mangles ISO 2022 text
        known = [m for m in mism if (m[0] == "7FE00010" and o.encapsulated and m[2] == "absent") or "ISO 2022" in o.charset]
        for path, exp, g in known:
            rep.note(f"lenient-orthanc: {level} metadata of {o.name}: {tag_name(path)}: expected {exp}, got {g}")
        mism = [m for m in mism if m not in known]
    rep.tally()
    for path, exp, g in mism[:MISMATCHES_SHOWN]:
        rep.fail(f"{level} metadata of {o.name}: {tag_name(path)}: expected {exp}, got {g}")
    if len(mism) > MISMATCHES_SHOWN:
        rep.fail(f"{level} metadata of {o.name}: ... and {len(mism) - MISMATCHES_SHOWN} more mismatches")
    for path, uri, exp, widths in bulk if base else []:
        with rep.guard(f"bulk data {tag_name(path)} of {o.name} ({uri})"):
            parts = srv.client.retrieve_bulkdata(urljoin(base, uri), media_types=(("application/octet-stream", "*"),))
            got_bytes = b"".join(parts)
            ok = len(parts) == 1 and bytes_match(got_bytes, exp, widths)
            rep.check(ok, f"bulk data {tag_name(path)} of {o.name}: {len(parts)} parts, {diff_at(got_bytes, exp)}")


# ---------------------------------------------------------------- STOW-RS


def stow_outcome(r):
    """(stored, reason) of a STOW response: reason lists the FailureReason
    codes and any text the server gave."""
    try:
        body = r.json() if r.content.strip() else None
    except ValueError:
        body = None
    failed = values(body, "00081198") if isinstance(body, dict) else []
    codes, texts = [], []
    for item in failed:
        codes += [f"0x{int(c):04X}" for c in values(item, "00081197") if as_number(c) is not None]
        texts += [str(v) for k, el in item.items() if isinstance(el, dict) and el.get("vr") in ("LO", "LT", "ST", "UT", "SH") for v in el.get("Value") or []]
    if isinstance(body, dict):
        texts += [str(v) for k, el in body.items() if isinstance(el, dict) and el.get("vr") in ("LO", "LT", "ST", "UT") for v in el.get("Value") or []]
        texts += [str(body[k]) for k in ("Message", "message", "error", "Details") if isinstance(body.get(k), str)]
    elif body is None and r.text.strip():
        texts.append(r.text.strip().replace("\n", " ")[:200])
    reason = f"HTTP {r.status_code}" + (f", FailureReason {'/'.join(codes)}" if codes else "") + (f": {'; '.join(texts)}" if texts else "")
    stored = r.status_code in (200, 202) and not failed
    return stored, reason, body, codes, texts


def stow_all(srv, rep, oracles):
    """Stores each file alone; returns (stored paths, refused {path: reason},
    {SOP Instance UID: the Oracle of the copy the server keeps})."""
    stored, refused, expected = [], {}, {}
    boundary = "dicomweb-check-" + uuid.uuid4().hex
    for o in oracles:
        try:
            r = srv.post("/studies", stow_body(o.raw, boundary), stow_type(boundary))
        except Exception as e:
            refused[o.path] = explain(e)
            rep.check(False, f"STOW {o.name}: {explain(e)}")
            continue
        ok, reason, body, codes, texts = stow_outcome(r)
        if not ok:
            refused[o.path] = reason
            log(f"refused {o.name}: {reason}" + (f" (pydicom: {o.why_refused})" if o.why_refused else ""))
            rep.check(r.status_code in (400, 409), f"STOW {o.name}: refused with {reason}, expected 409 or 400")
            if r.status_code == 409 or not texts:
                rep.orthanc(codes, f"STOW {o.name}: refusal without a FailureReason (0008,1198/1197): {reason}")
            for item in values(body, "00081198") if isinstance(body, dict) else []:
                named = first(item, "00081155")
                rep.check(named in (None, o.sop), f"STOW {o.name}: FailedSOPSequence names {named}, the file's SOP Instance UID is {o.sop}")
            continue
        stored.append(o.path)
        if o.why_refused:  # Orthanc (DCMTK) reads files without File Meta Information
            rep.orthanc(False, f"STOW {o.name}: stored, but should be refused ({o.why_refused})")
            continue
        refs = [i for i in values(body, "00081199") if first(i, "00081155") == o.sop]
        # Other bytes under a SOP Instance UID already held: kept as held, and
        # the sender told so (202, Warning Reason B000), not a plain success.
        diverges = o.sop in expected and expected[o.sop].raw != o.raw
        if diverges:
            warned = [c for i in refs for c in values(i, "00081196")]
            rep.check(r.status_code == 202 and 0xB000 in [as_number(c) for c in warned], f"STOW {o.name}: other bytes under a held UID: HTTP {r.status_code}, Warning Reason {warned}, expected 202 and B000")
        else:
            rep.check(r.status_code == 200, f"STOW {o.name}: HTTP {r.status_code}, expected 200")
        if rep.check(refs, f"STOW {o.name}: no ReferencedSOPSequence item for {o.sop or '(no SOP Instance UID)'}") and o.sop:
            rep.check(first(refs[0], "00081150") == o.sop_class, f"STOW {o.name}: ReferencedSOPClassUID {first(refs[0], '00081150')}, expected {o.sop_class}")
            # The instance's RetrieveURL; for a duplicate, where either copy lives.
            url = str(first(refs[0], "00081190") or "").rstrip("/")
            homes = {f"/studies/{c.study}/series/{c.series}/instances/{c.sop}" for c in (o, expected.get(o.sop, o))}
            rep.check(any(url.endswith(h) for h in homes), f"STOW {o.name}: RetrieveURL {url!r} does not name the instance")
        if o.sop and o.study and o.ds is not None and o.sop not in expected:
            expected[o.sop] = o
    return stored, refused, expected


def check_refused_invisible(srv, rep, oracles, refused, expected):
    """Nothing of a refused file is visible, unless another file stored it."""
    studies = {o.study for o in expected.values()}
    for o in oracles:
        if o.path not in refused or o.ds is None:
            continue
        if o.sop and o.sop not in expected:
            with rep.guard(f"QIDO after refusal of {o.name}"):
                found = srv.client.search_for_instances(search_filters={"SOPInstanceUID": o.sop})
                rep.check(not found, f"refused {o.name}, yet QIDO finds its instance {o.sop}")
        if o.study and o.study not in studies:
            with rep.guard(f"QIDO after refusal of {o.name}"):
                found = srv.client.search_for_studies(search_filters={"StudyInstanceUID": o.study})
                rep.check(not found, f"refused {o.name}, yet QIDO finds its study {o.study}")


def synthetic_instance():
    """A small Secondary Capture image with fresh UIDs, never stored."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Dicomweb^Check", "DWCHECK", "OT"
    ds.Rows = ds.Columns = 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes([0, 64, 128, 255])
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return ds, buf.getvalue()


def negative_stow(srv, rep, token):
    """Malformed, mistyped and unauthenticated STOW requests store nothing."""
    ds, raw = synthetic_instance()
    b = "dicomweb-check-" + uuid.uuid4().hex
    cases = [
        ("boundary not in the body", stow_body(raw, "other-" + b), stow_type(b), None, (400,)),
        ("no closing delimiter", stow_body(raw, b)[: -len(f"\r\n--{b}--\r\n")], stow_type(b), None, (400,)),
        ("Content-Type application/json", json.dumps([ds.to_json_dict()]).encode(), "application/json", None, (415,)),
    ]
    if token:
        cases.append(("no Authorization header", stow_body(raw, b), stow_type(b), {"Content-Type": stow_type(b)}, (401,)))
    for what, body, ctype, headers, want in cases:
        with rep.guard(f"STOW with {what}"):
            if headers is not None:  # no token: a plain request, not the session
                r = requests.post(srv.full("/studies"), data=body, headers=headers, timeout=60)
            else:
                r = srv.post("/studies", body, ctype)
            rep.orthanc(r.status_code in want, f"STOW with {what}: HTTP {r.status_code}, expected {'/'.join(map(str, want))}")
    with rep.guard("QIDO after rejected STOW requests"):
        found = srv.client.search_for_instances(search_filters={"SOPInstanceUID": ds.SOPInstanceUID})
        rep.check(not found, "a rejected STOW request stored its instance")


# ---------------------------------------------------------------- WADO-RS


def sop_of(part):
    ds = pydicom.dcmread(io.BytesIO(part), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    return str(ds.SOPInstanceUID)


def check_retrieve(srv, rep, path, members, what):
    """A study/series/instance retrieval returns the members' files, byte for
    byte (raw multipart), and dicomweb-client reads the same instances."""
    want = {o.sop: o for o in members}
    with rep.guard(f"WADO {what}"):
        r = srv.get(path, DICOM_ANY)
        if rep.check(r.status_code == 200, f"WADO {what}: HTTP {r.status_code}"):
            got = {}
            for headers, body in multipart_parts(r):
                rep.check(media_type(headers.get("content-type"))[0] == "application/dicom", f"WADO {what}: part Content-Type {headers.get('content-type')!r}")
                got[sop_of(body)] = body
            rep.check(set(got) == set(want), f"WADO {what}: instances {sorted(set(got) ^ set(want))} missing or extra")
            for sop in set(got) & set(want):
                rep.check(got[sop] == want[sop].raw, f"WADO {what}: {want[sop].name} differs: {diff_at(got[sop], want[sop].raw)}")
    with rep.guard(f"dicomweb-client retrieve {what}"):
        parts = path.strip("/").split("/")[1::2]  # study, series, instance UIDs
        if len(parts) == 3:
            got = [srv.client.retrieve_instance(*parts, media_types=ANY_TS)]
        elif len(parts) == 2:
            got = srv.client.retrieve_series(*parts, media_types=ANY_TS)
        else:
            got = srv.client.retrieve_study(*parts, media_types=ANY_TS)
        sops = sorted(str(d.SOPInstanceUID) for d in got)
        rep.check(sops == sorted(want), f"dicomweb-client retrieve {what}: got {sops}, expected {sorted(want)}")


def check_frames(srv, rep, o):
    px, why = o.pixels()
    if px is None:
        if o.ds is not None and "PixelData" in o.ds:
            rep.note(f"frames of {o.name}: skipped, {why}")
        return
    rows, cols, spp, bits, n = px
    st, se, sop = o.study, o.series, o.sop
    if bits == 1 and rows * cols * spp % 8:
        rep.note(f"frames of {o.name}: skipped, 1-bit frames that do not start on a byte")
        return
    size = rows * cols * spp * bits // 8
    native = rows * cols * 2 * bits // 8 if o.ds.get("PhotometricInterpretation") == "YBR_FULL_422" and not o.encapsulated else size
    try:
        if o.encapsulated:
            frames = list(generate_frames(o.ds.PixelData, number_of_frames=n))
        else:
            data = o.ds.PixelData
            frames = [data[i * native:(i + 1) * native] for i in range(n)]
            if len(data) < n * native:
                raise ValueError(f"{len(data)} bytes of Pixel Data for {n} frames of {native}")
    except Exception as e:
        rep.note(f"frames of {o.name}: skipped, pydicom cannot split them ({e})")
        return
    widths = (2, max(1, bits // 8)) if o.big_endian else ()
    no_frames = o.ts in ORTHANC_NO_FRAMES
    for k in sorted({1, n}):
        with rep.guard(f"frame {k} of {o.name}", orthanc=no_frames):
            got = srv.client.retrieve_instance_frames(st, se, sop, [k], media_types=(("application/octet-stream", "*"),))
            exp = frames[k - 1]
            ok = len(got) == 1 and (bytes_match(got[0], exp, widths) or (o.encapsulated and exp.endswith(b"\0") and got[0] == exp[:-1]))
            rep.check(ok, f"frame {k} of {o.name}: {len(got)} parts, {diff_at(b''.join(got), exp)}")
    if o.encapsulated:
        with rep.guard(f"frame 1 of {o.name} decoded to {EXPLICIT_LE}", orthanc=o.ts in ORTHANC_NO_DECODE):
            try:
                got = srv.client.retrieve_instance_frames(st, se, sop, [1], media_types=(("application/octet-stream", EXPLICIT_LE),))
                rep.check(len(got) == 1 and len(got[0]) == size, f"frame 1 of {o.name} decoded: {[len(g) for g in got]} bytes, expected {size}")
            except requests.HTTPError as e:
                skip = RENDER_SKIP.get(os.path.basename(o.path))
                if skip and declined(e):
                    rep.note(f"frame 1 of {o.name} decoded: HTTP {e.response.status_code} (known: {skip})")
                elif e.response is None or e.response.status_code not in (406, 415):
                    raise
                else:
                    rep.note(f"frame 1 of {o.name} ({o.ts.name}): the server declined decoding with HTTP {e.response.status_code}")
    for k in (0, n + 1):
        with rep.guard(f"frame {k} of {o.name}"):
            r = srv.get(f"/studies/{st}/series/{se}/instances/{sop}/frames/{k}", OCTETS_ANY)
            (rep.orthanc if no_frames else rep.check)(400 <= r.status_code < 500, f"frame {k} of {o.name} ({n} frames): HTTP {r.status_code}, expected 4xx")


def png_size(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def is_image(data):
    return data[:2] == b"\xff\xd8" or data[:8] == b"\x89PNG\r\n\x1a\n" or data[:4] == b"GIF8"


def renderable(o):
    """Single-sample (grey, palette, 1-bit) or three-sample (RGB, YBR) pixels."""
    px, why = o.pixels()
    return px is not None and px[2] in (1, 3)


def check_rendered(srv, rep, o):
    if not renderable(o):
        if o.pixels()[0] is not None:
            rep.note(f"rendered {o.name}: not tried ({o.pixels()[0][2]} samples per pixel)")
        return
    rows, cols = o.pixels()[0][:2]
    st, se, sop = o.study, o.series, o.sop
    c = srv.client
    skip = RENDER_SKIP.get(os.path.basename(o.path))
    for what, fetch in (("rendered", lambda mt: c.retrieve_instance_rendered(st, se, sop, media_types=(mt,))),
                        ("frames/1/rendered", lambda mt: c.retrieve_instance_frames_rendered(st, se, sop, [1], media_types=(mt,)))):
        for mt in ("image/jpeg", "image/png"):
            try:
                data = fetch(mt)
            except Exception as e:
                if skip and declined(e):
                    rep.note(f"{what} {mt} of {o.name}: {explain(e)} (known: {skip})")
                elif o.ts in ORTHANC_NO_DECODE:
                    rep.orthanc(False, f"{what} {mt} of {o.name}: {explain(e)}")
                else:
                    rep.check(False, f"{what} {mt} of {o.name}: {explain(e)}")
                continue
            if mt == "image/jpeg":
                rep.check(data[:2] == b"\xff\xd8", f"{what} {mt} of {o.name}: not a JPEG ({data[:8]!r})")
            else:
                rep.check(png_size(data) == (cols, rows), f"{what} {mt} of {o.name}: PNG size {png_size(data)}, expected {(cols, rows)}")


def check_thumbnail(srv, rep, path, what):
    with rep.guard(f"thumbnail of {what}"):
        r = srv.get(path + "/thumbnail", "image/jpeg")
        ok = r.status_code == 200 and is_image(r.content)
        got = r.content[:8] if r.status_code == 200 else " ".join(r.text.split())[:100]
        rep.orthanc(ok, f"thumbnail of {what}: HTTP {r.status_code} {r.headers.get('Content-Type')}: {got!r}")


def check_instance(srv, o, lenient):
    rep = Report(lenient)
    inst = f"/studies/{o.study}/series/{o.series}/instances/{o.sop}"
    check_retrieve(srv, rep, inst, [o], f"instance {o.name}")
    with rep.guard(f"instance metadata of {o.name}"):
        got = srv.client.retrieve_instance_metadata(o.study, o.series, o.sop)
        compare_metadata(srv, rep, o, got, "instance", base=srv.full(inst + "/metadata"))
    check_frames(srv, rep, o)
    check_rendered(srv, rep, o)
    return rep


def check_series(srv, st, se, members, lenient):
    rep = Report(lenient)
    path = f"/studies/{st}/series/{se}"
    check_retrieve(srv, rep, path, members, f"series {se}")
    check_listing_metadata(srv, rep, members, "series", lambda: srv.client.retrieve_series_metadata(st, se))
    if any(renderable(o) for o in members):
        check_thumbnail(srv, rep, path, f"series {se}")
    with rep.guard(f"QIDO instances of series {se}"):
        found = {first(r, "00080018"): r for r in srv.client.search_for_instances(st, se)}
        want = {o.sop: o for o in members}
        rep.check(set(found) == set(want), f"QIDO instances of series {se}: {sorted(set(found) ^ set(want))} missing or extra")
        for sop in set(found) & set(want):
            o, r = want[sop], found[sop]
            rep.check(first(r, "00080016") == o.sop_class, f"QIDO instance {o.name}: SOPClassUID {first(r, '00080016')}, expected {o.sop_class}")
            exp_no, got_no = o.int("InstanceNumber"), first(r, "00200013")
            if exp_no is not None:
                rep.check(got_no is not None and numbers_equal(got_no, exp_no), f"QIDO instance {o.name}: InstanceNumber {got_no}, expected {exp_no}")
    return rep


def check_listing_metadata(srv, rep, members, level, fetch):
    with rep.guard(f"{level} metadata of {members[0].study}"):
        got = {first(d, "00080018"): d for d in fetch()}
        want = {o.sop: o for o in members}
        rep.check(set(got) == set(want), f"{level} metadata: instances {sorted(set(got) ^ set(want))} missing or extra")
        for sop in set(got) & set(want):
            compare_metadata(srv, rep, want[sop], got[sop], level)


# ---------------------------------------------------------------- QIDO-RS

STUDY_KEYS = {"PatientID": "00100020", "PatientName": "00100010", "StudyDate": "00080020", "AccessionNumber": "00080050"}


def study_values(members, key):
    """The values an attribute has among a study's instances (normalized)."""
    out = set()
    for o in members:
        e = o.json().get(key)
        if e is not None and not e.get("skip"):
            out.add(tuple(norm_values(e, e["vr"])))
    return out


def check_study(srv, st, series, lenient):
    rep = Report(lenient)
    members = [o for ms in series.values() for o in ms]
    check_retrieve(srv, rep, f"/studies/{st}", members, f"study {st}")
    check_listing_metadata(srv, rep, members, "study", lambda: srv.client.retrieve_study_metadata(st))
    if any(renderable(o) for o in members):
        check_thumbnail(srv, rep, f"/studies/{st}", f"study {st}")
    with rep.guard(f"QIDO study {st}"):
        found = srv.client.search_for_studies(search_filters={"StudyInstanceUID": st})
        if rep.check(len(found) == 1 and first(found[0], "0020000D") == st, f"QIDO study {st}: {len(found)} results"):
            r = found[0]
            for kw, key in STUDY_KEYS.items():
                want = study_values(members, key)
                if kw == "StudyDate":  # indexed as YYYYMMDD, the ACR-NEMA YYYY.MM.DD form normalised
                    want = {tuple(v.replace(".", "") if len(v) == 10 and v[4] == v[7] == "." else v for v in w) for w in want}
                got = tuple(norm_values(r.get(key), "PN" if kw == "PatientName" else "LO"))
                ok = not want or got in want
                msg = f"QIDO study {st}: {kw} {got}, expected one of {sorted(want)}"
                rep.orthanc(ok, msg) if not str(want).isascii() else rep.check(ok, msg)
            mods = {str(o.ds.get("Modality", "")).strip() for o in members} - {""}
            got = set(map(str, values(r, "00080061")))
            rep.check(got == mods, f"QIDO study {st}: ModalitiesInStudy {sorted(got)}, expected {sorted(mods)}")
    desc = study_values(members, "00081030")
    for fields in (["StudyDescription"], ["all"]):
        with rep.guard(f"QIDO study {st} includefield={fields[0]}"):
            found = srv.client.search_for_studies(search_filters={"StudyInstanceUID": st}, fields=fields)
            got = tuple(norm_values(found[0].get("00081030"), "LO")) if found else None
            ok = got in desc if any(desc) else got in (None, ())
            (rep.orthanc if fields == ["all"] else rep.check)(ok, f"QIDO study {st} includefield={fields[0]}: StudyDescription {got}, expected one of {sorted(desc)}")
    with rep.guard(f"QIDO series of study {st}"):
        found = {first(r, "0020000E"): r for r in srv.client.search_for_series(st)}
        rep.check(set(found) == set(series), f"QIDO series of study {st}: {sorted(set(found) ^ set(series))} missing or extra")
        for se in set(found) & set(series):
            want = {str(o.ds.get("Modality", "")).strip() for o in series[se]}
            rep.check(str(first(found[se], "00080060") or "") in want, f"QIDO series {se}: Modality {first(found[se], '00080060')}, expected one of {sorted(want)}")
    return rep


def prefix_of(name, lenient):
    """A wildcard prefix of a name: up to the first letter of its second
    component, ASCII letters case-swapped (PN matching is case-insensitive)."""
    caret = name.find("^")
    p = name[: caret + 2] if 0 <= caret < len(name) - 1 else name[:4]
    if lenient:  # Orthanc does not percent-decode: plain ASCII only
        p = p[: next((i for i, ch in enumerate(p) if not (ch.isascii() and ch.isalnum())), len(p))]
    if not any(ch.isalnum() for ch in p):
        return ""  # "^^*" would match about anything
    return "".join(ch.swapcase() if ch.isascii() else ch for ch in p)


def pn_matches(elem, prefix):
    # Trailing empty name components are insignificant: "OB" is "OB^^^^".
    def padded(c):
        c = str(c)
        return c + "^" * max(0, 4 - c.count("^"))
    for v in (elem or {}).get("Value") or []:
        comps = v.values() if isinstance(v, dict) else [v]
        if any(padded(c).casefold().startswith(prefix.casefold()) for c in comps if c):
            return True
    return False


def check_qido_global(srv, rep, studies, lenient):
    stored = set(studies)
    enc = (lambda v: quote(v, safe="*")) if lenient else (lambda v: quote(v, safe=""))
    with rep.guard("QIDO all studies"):
        everything = [first(r, "0020000D") for r in srv.client.search_for_studies()]
        rep.check(len(set(everything)) == len(everything), "QIDO all studies: a study listed twice")
        rep.check(stored <= set(everything), f"QIDO all studies: stored studies missing: {sorted(stored - set(everything))}")
        limit = max(1, math.ceil(len(everything) / 4))
        seen, offset = [], 0
        while offset <= len(everything) + limit:
            page = [first(r, "0020000D") for r in srv.client.search_for_studies(limit=limit, offset=offset)]
            rep.check(len(page) <= limit, f"QIDO limit={limit} offset={offset}: {len(page)} results")
            rep.check(not set(page) & set(seen), f"QIDO limit={limit} offset={offset}: overlaps earlier pages")
            seen += page
            if not page:
                break
            offset += limit
        rep.check(sorted(seen) == sorted(everything), f"QIDO paging by {limit}: union of pages ({len(seen)}) differs from the unpaged result ({len(everything)})")

    for st, series in sorted(studies.items()):
        o = next(iter(series.values()))[0]
        pn = (o.json().get("00100010") or {}).get("Value") or []
        name = str(pn[0].get("Alphabetic", "")).strip() if pn and isinstance(pn[0], dict) else ""
        prefix = prefix_of(name, lenient) if name else ""
        if prefix:
            with rep.guard(f"QIDO PatientName={prefix}*"):
                found = srv.qido("/studies", "PatientName=" + enc(prefix + "*"))
                rep.orthanc(st in {first(r, "0020000D") for r in found}, f"QIDO PatientName={prefix}* (sent {enc(prefix + '*')}): study {st} ({name}) not found")
                bad = [first(r, "00100010") for r in found if not pn_matches(r.get("00100010"), prefix)]
                rep.check(not bad, f"QIDO PatientName={prefix}*: non-matching names {short(bad)}")
        if name and not lenient and "=" not in name:
            with rep.guard(f"QIDO PatientName={name} (dicomweb-client)"):
                found = srv.client.search_for_studies(search_filters={"PatientName": name})
                found = {first(r, "0020000D") for r in found}
                rep.check(st in found, f"QIDO PatientName={name} (sent by dicomweb-client as {quote_plus(name)}): study {st} not found")

    dates = {}
    for st, series in studies.items():
        ds = {str(o.ds.get("StudyDate", "")).strip() for ms in series.values() for o in ms}
        if len(ds) == 1 and all(len(d) == 8 and d.isdigit() for d in ds):
            dates[st] = ds.pop()
    uniq = sorted(set(dates.values()))
    if len(uniq) < 2:
        rep.note("StudyDate range queries: fewer than two distinct study dates stored")
        return
    lo, hi = uniq[len(uniq) // 3], uniq[(2 * len(uniq)) // 3]
    for query, low, high in ((f"{lo}-{hi}", lo, hi), (f"-{lo}", "", lo), (f"{hi}-", hi, "99999999"), (lo, lo, lo)):
        with rep.guard(f"QIDO StudyDate={query}"):
            found = srv.client.search_for_studies(search_filters={"StudyDate": query})
            got = {first(r, "0020000D"): str(first(r, "00080020") or "") for r in found}
            outside = {s: d for s, d in got.items() if not low <= d <= high}
            rep.check(not outside, f"QIDO StudyDate={query}: studies out of range {short(outside)}")
            want = {s for s, d in dates.items() if low <= d <= high}
            rep.check(want <= set(got), f"QIDO StudyDate={query}: in-range studies missing {sorted(want - set(got))}")


# ---------------------------------------------------------------- errors


def check_errors(srv, rep, token):
    unknown = "2.25." + str(uuid.uuid4().int)
    for what, path, accept in (
        ("unknown study", f"/studies/{unknown}", DICOM_ANY),
        ("unknown study metadata", f"/studies/{unknown}/metadata", DICOM_JSON),
        ("unknown instance", f"/studies/{unknown}/series/{unknown}.1/instances/{unknown}.2", DICOM_ANY),
        ("unknown instance metadata", f"/studies/{unknown}/series/{unknown}.1/instances/{unknown}.2/metadata", DICOM_JSON),
    ):
        with rep.guard(what):
            r = srv.get(path, accept)
            rep.check(r.status_code == 404, f"GET {what}: HTTP {r.status_code}, expected 404")
    for path in ("/studies/..%2F..%2Fetc%2Fpasswd", "/studies/not-a-uid/metadata", "/studies/1.2.3/series/..%2F..%2F..%2Fetc/metadata"):
        with rep.guard(f"GET {path}"):
            r = srv.get(path, DICOM_JSON)
            rep.check(400 <= r.status_code < 500, f"GET {path}: HTTP {r.status_code}, expected 4xx")
    if token:
        for what, headers in (("without a token", {}), ("with a wrong token", {"Authorization": f"Bearer x{token}"})):
            with rep.guard(f"QIDO {what}"):
                r = requests.get(srv.full("/studies"), headers={"Accept": DICOM_JSON, **headers}, timeout=60)
                rep.check(r.status_code == 401, f"QIDO {what}: HTTP {r.status_code}, expected 401")


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="DICOMweb base URL, e.g. http://127.0.0.1:8042/dicom-web")
    ap.add_argument("--token", help="bearer token sent with every request")
    ap.add_argument("--lenient-orthanc", action="store_true", help="known Orthanc deviations become notes")
    ap.add_argument("--jobs", type=int, default=4, help="concurrent requests after the STOW phase")
    ap.add_argument("--known-render-failures", help="TSV of file names whose pixel data the server is known not to decode")
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args()
    if args.known_render_failures:
        load_render_skip(args.known_render_failures)

    t0 = time.monotonic()
    srv = Server(args.url, args.token)
    rep = Report(args.lenient_orthanc)
    roots = [os.path.abspath(p if os.path.isdir(p) else os.path.dirname(p) or ".") for p in args.paths]
    root = os.path.commonpath(roots) if len(set(roots)) > 1 else os.path.dirname(roots[0])
    oracles = [Oracle(p, root) for p in expand(args.paths)]
    log(f"{len(oracles)} files")

    negative_stow(srv, rep, args.token)
    stored, refused, expected = stow_all(srv, rep, oracles)
    log(f"STOW: {len(stored)} stored, {len(refused)} refused, {len(expected)} distinct instances ({time.monotonic() - t0:.1f} s)")
    check_refused_invisible(srv, rep, oracles, refused, expected)

    studies = {}
    for o in expected.values():
        studies.setdefault(o.study, {}).setdefault(o.series, []).append(o)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        tasks = [pool.submit(check_instance, srv, o, args.lenient_orthanc) for o in expected.values()]
        tasks += [pool.submit(check_series, srv, st, se, ms, args.lenient_orthanc) for st, ss in studies.items() for se, ms in ss.items()]
        tasks += [pool.submit(check_study, srv, st, ss, args.lenient_orthanc) for st, ss in studies.items()]
        for t in tasks:
            try:
                sub = t.result()
            except Exception as e:  # a harness bug: one failure, not a crash
                rep.check(False, f"internal error: {explain(e)}")
                continue
            rep.checks += sub.checks
            rep.failures += sub.failures
            rep.notes += sub.notes
    log(f"WADO/metadata/frames/rendered: done ({time.monotonic() - t0:.1f} s)")
    check_qido_global(srv, rep, studies, args.lenient_orthanc)
    check_errors(srv, rep, args.token)

    for n in rep.notes:
        log("note: " + n)
    log(f"{rep.checks} checks, {len(rep.failures)} failures, {len(rep.notes)} notes in {time.monotonic() - t0:.1f} s")
    print(json.dumps({"stored": stored, "refused": refused, "checks": rep.checks, "failures": rep.failures, "notes": rep.notes}))
    sys.exit(0 if not rep.failures else 1)


if __name__ == "__main__":
    main()
