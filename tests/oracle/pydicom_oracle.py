"""Independent reading of pydicom's test files, for radhub's import test.

Prints one JSON object per file under the given folders: whether pydicom
(without force) reads it as a complete Part 10 instance with the four UIDs
an index needs, and the attributes radhub indexes.
"""
import json
import os
import sys
import warnings

import pydicom

warnings.simplefilter("ignore")


def text(ds, kw):
    v = ds.get(kw)
    return "" if v is None else str(v).strip()


def da(v):
    """A DA as radhub indexes it: YYYYMMDD (YYYY.MM.DD normalised), else empty."""
    d = v.replace(".", "") if len(v) == 10 and v[4] == v[7] == "." else v
    return d if len(d) == 8 and d.isascii() and d.isdigit() else ""


def read(path):
    try:
        ds = pydicom.dcmread(path)
        for _ in ds.iterall():
            pass
    except Exception as e:  # pydicom's verdict is the point, whatever it raises
        return {"valid": False, "why": f"{type(e).__name__}: {e}"[:200]}
    missing = [k for k in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID") if k not in ds]
    if missing:
        return {"valid": False, "why": "missing " + ",".join(missing)}
    try:
        frames = max(int(ds.get("NumberOfFrames") or 1), 1)
    except ValueError:  # an unreadable count: radhub takes it as one frame
        frames = 1
    return {
        "valid": True,
        "sop": str(ds.SOPInstanceUID),
        "study": str(ds.StudyInstanceUID),
        "series": str(ds.SeriesInstanceUID),
        "patient_id": text(ds, "PatientID"),
        "patient_name": text(ds, "PatientName"),
        "study_date": da(text(ds, "StudyDate")),
        "modality": text(ds, "Modality"),
        "rows": int(ds.get("Rows") or 0),
        "columns": int(ds.get("Columns") or 0),
        "frames": frames,
    }


out = []
for top in sys.argv[1:]:
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            if f.endswith((".py", ".pyc")):
                continue
            p = os.path.join(root, f)
            r = read(p)
            r["path"] = p
            out.append(r)
json.dump(out, sys.stdout)
