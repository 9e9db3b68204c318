"""PS3.18 conformance checks of radhub's DICOMweb with a real client.

`make OUT`: writes one study of instances in the transfer syntaxes the
checks need (fresh UIDs, one patient), from pydicom's MR_small set, and
prints their manifest as JSON.

`client --url U --token T --manifest M`: drives dicomweb-client against a
hub holding them, and prints {"checks": n, "failures": [...]} as JSON.
pydicom is the oracle: every lossless instance retrieved without a
transfer-syntax parameter must be Explicit VR Little Endian with the same
pixels as the original.
"""

import argparse
import io
import json
import os
import sys
import warnings

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

warnings.simplefilter("ignore")

EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_XL_LOSSLESS = "1.2.840.10008.1.2.4.110"


def make(out):
    study, series_a, series_b, series_c = (generate_uid() for _ in range(4))
    base = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    patient = {k: base.get(k) for k in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")}
    manifest = {"study": study, "instances": {}}

    def put(name, ds, series, number):
        for k, v in patient.items():
            if v is not None:
                setattr(ds, k, v)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        path = os.path.join(out, f"{name}.dcm")
        # Explicit VR little endian data sets; pydicom does not know every syntax's UID.
        ds.save_as(path, enforce_file_format=True, implicit_vr=str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2",
                   little_endian=str(ds.file_meta.TransferSyntaxUID) != "1.2.840.10008.1.2.2")
        manifest["instances"][name] = {
            "sop": ds.SOPInstanceUID,
            "series": series,
            "ts": str(ds.file_meta.TransferSyntaxUID),
            "path": path,
        }

    # Series A: every syntax radhub can deliver, lossless and lossy.
    for i, (name, file) in enumerate([
        ("explicit", "MR_small.dcm"),
        ("implicit", "MR_small_implicit.dcm"),
        ("bigendian", "MR_small_bigendian.dcm"),
        ("rle", "MR_small_RLE.dcm"),
        ("j2k_lossless", "MR_small_jp2klossless.dcm"),
        ("jpeg_lossy", "SC_rgb_jpeg_dcmtk.dcm"),
        ("deflated", "image_dfl.dcm"),
    ]):
        put(name, pydicom.dcmread(get_testdata_file(file)), series_a, i + 1)
    # No pixel data, stored Implicit VR Little Endian.
    bare = pydicom.dcmread(get_testdata_file("MR_small_implicit.dcm"))
    for k in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
              "SamplesPerPixel", "PhotometricInterpretation"):
        if k in bare:
            delattr(bare, k)
    put("no_pixels", bare, series_a, 8)
    # Series B: one lossless instance radhub cannot decode (JPEG XL lossless;
    # its fragments are RLE's, never decoded), one it can.
    put("jxl_lossless", pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm")), series_b, 1)
    relabel(manifest["instances"]["jxl_lossless"], JPEG_XL_LOSSLESS)
    put("explicit_b", pydicom.dcmread(get_testdata_file("MR_small.dcm")), series_b, 2)
    # Series C: a wide image (32 rows, 64 columns) for viewports.
    wide = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    arr = wide.pixel_array[:32, :].copy()
    wide.Rows, wide.Columns = 32, 64
    wide.PixelData = arr.tobytes()
    put("wide", wide, series_c, 1)
    json.dump(manifest, sys.stdout)


def relabel(o, ts):
    """Gives a written file another transfer syntax in its meta group
    (pydicom 3.0 writes none it does not know): the element and the group
    length patched in place."""
    data = open(o["path"], "rb").read()
    old_ts = o["ts"].encode() + (b"\0" if len(o["ts"]) % 2 else b"")
    new_ts = ts.encode() + (b"\0" if len(ts) % 2 else b"")
    old_el = b"\x02\x00\x10\x00UI" + len(old_ts).to_bytes(2, "little") + old_ts
    at = data.index(old_el)
    data = data[:at] + b"\x02\x00\x10\x00UI" + len(new_ts).to_bytes(2, "little") + new_ts + data[at + len(old_el):]
    gl = data.index(b"\x02\x00\x00\x00UL\x04\x00") + 8
    n = int.from_bytes(data[gl:gl + 4], "little") + len(new_ts) - len(old_ts)
    data = data[:gl] + n.to_bytes(4, "little") + data[gl + 4:]
    open(o["path"], "wb").write(data)
    o["ts"] = ts


class Checks:
    def __init__(self):
        self.n, self.failures = 0, []

    def check(self, ok, what):
        self.n += 1
        if not ok:
            self.failures.append(what)

    def guard(self, what, f):
        try:
            f()
        except Exception as e:  # the failure is the finding: report, go on
            self.failures.append(f"{what}: {type(e).__name__}: {e}")


def client_checks(url, token, manifest):
    from dicomweb_client.api import DICOMwebClient
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    c = DICOMwebClient(url=url, session=session)
    m = json.load(open(manifest))
    st, inst = m["study"], m["instances"]
    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    ck = Checks()

    # PS3.18 8.7.3.5 / Table 8.7.3-2: no transfer-syntax parameter means
    # Explicit VR Little Endian; lossless instances decoded to it, lossy as stored.
    def default_syntax():
        a = inst["explicit"]["series"]
        got = {str(d.SOPInstanceUID): d for d in c.retrieve_series(st, a)}
        for name in ("explicit", "implicit", "bigendian", "rle", "j2k_lossless", "deflated", "no_pixels", "jpeg_lossy"):
            o = inst[name]
            d = got.get(o["sop"])
            ck.check(d is not None, f"default retrieve: {name} missing from the series")
            if d is None:
                continue
            ts = str(d.file_meta.TransferSyntaxUID)
            want = o["ts"] if name == "jpeg_lossy" else EXPLICIT_LE
            ck.check(ts == want, f"default retrieve: {name} (stored {o['ts']}) came as {ts}, expected {want}")
            if name == "deflated":
                orig = pydicom.dcmread(o["path"]).pixel_array
                ck.check(np.array_equal(d.pixel_array, orig), f"default retrieve: {name}'s pixels differ from the original's")
            elif name not in ("jpeg_lossy", "no_pixels"):
                ck.check(np.array_equal(d.pixel_array, reference), f"default retrieve: {name}'s pixels differ from the original's")
            if name == "no_pixels":
                orig = pydicom.dcmread(o["path"])
                ck.check(d.PatientName == orig.PatientName and "PixelData" not in d, f"default retrieve: {name} not whole")
        # transfer-syntax=*: each as stored, byte for byte.
        for d in c.retrieve_series(st, a, media_types=(("application/dicom", "*"),)):
            o = next(v for v in inst.values() if v["sop"] == str(d.SOPInstanceUID))
            ck.check(str(d.file_meta.TransferSyntaxUID) == o["ts"], f"transfer-syntax=*: {d.SOPInstanceUID} came as {d.file_meta.TransferSyntaxUID}")
    ck.guard("default transfer syntax", default_syntax)

    # Metadata: Available Transfer Syntax UID (0008,3002) per instance, the stored one.
    def available_syntax():
        for name, o in inst.items():
            md = c.retrieve_instance_metadata(st, o["series"], o["sop"])
            got = (md.get("00083002") or {}).get("Value")
            ck.check(got == [o["ts"]], f"metadata of {name}: 00083002 is {got}, expected [{o['ts']}]")
        series = c.retrieve_series_metadata(st, inst["explicit"]["series"])
        ck.check(all("00083002" in d for d in series) and len(series) == 8, "series metadata: 00083002 missing from some instances")
    ck.guard("available transfer syntax", available_syntax)

    # Bulk data byte ranges (PS3.18 2016b 6.5.5.2: only the bytes asked for).
    def ranges():
        o = inst["explicit"]
        md = c.retrieve_instance_metadata(st, o["series"], o["sop"])
        uri = md["7FE00010"]["BulkDataURI"]
        whole = b"".join(c.retrieve_bulkdata(uri))
        ck.check(whole == pydicom.dcmread(o["path"]).PixelData, "bulk data: pixel data differs from the file's")
        part = b"".join(c.retrieve_bulkdata(uri, byte_range=(100, 1123)))
        ck.check(part == whole[100:1124], f"bulk data bytes 100-1123: {len(part)} bytes, not the file's")
        tail = b"".join(c.retrieve_bulkdata(uri, byte_range=(len(whole) - 10, 10 ** 9)))
        ck.check(tail == whole[-10:], f"bulk data to past its end: {len(tail)} bytes")
    ck.guard("byte ranges", ranges)

    # Rendered: dicomweb-client's media types, viewport keeping the aspect ratio.
    def rendered():
        from PIL import Image
        w = inst["wide"]
        png = c.retrieve_instance_rendered(st, w["series"], w["sop"], media_types=("image/png",))
        img = Image.open(io.BytesIO(png))
        ck.check(img.format == "PNG" and img.size == (64, 32), f"rendered PNG: {img.format} {img.size}")
        jpg = c.retrieve_instance_rendered(st, w["series"], w["sop"], media_types=("image/jpeg",), params={"viewport": "40,10"})
        img = Image.open(io.BytesIO(jpg))
        # 64×32 inside 40×10: 20×10 (the height binds).
        ck.check(img.format == "JPEG" and img.size == (20, 10), f"viewport 40,10 of 64×32: {img.format} {img.size}, expected (20, 10)")
        frame = c.retrieve_instance_frames_rendered(st, w["series"], w["sop"], [1], media_types=("image/png",), params={"viewport": "16,16"})
        img = Image.open(io.BytesIO(frame))
        ck.check(img.format == "PNG" and img.size == (16, 8), f"frame 1 rendered, viewport 16,16 of 64×32: {img.format} {img.size}")
    ck.guard("rendered", rendered)

    print(json.dumps({"checks": ck.n, "failures": ck.failures}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("out")
    cl = sub.add_parser("client")
    cl.add_argument("--url", required=True)
    cl.add_argument("--token", required=True)
    cl.add_argument("--manifest", required=True)
    a = ap.parse_args()
    if a.cmd == "make":
        make(a.out)
    else:
        client_checks(a.url, a.token, a.manifest)


if __name__ == "__main__":
    main()
