#!/usr/bin/env python3
"""Writes the viewer benchmark's CT: one study, one axial series of N slices.

512x512, 16 bits allocated and stored, signed (Pixel Representation 1),
Rescale Slope 1 / Intercept -1024 (stored value = HU + 1024), Pixel Spacing
0.7\\0.7, Slice Thickness 1, Image Position Patient stepping 1 mm in z,
Window 40/400, explicit VR little endian. The anatomy is crude but not
trivial for a renderer: a body ellipse of soft tissue with fat, two lungs, a
spine and a rib ring that move from slice to slice, and Gaussian noise, so
neighbouring slices differ and no frame is flat.

Deterministic (seeded noise, UIDs derived from fixed strings), so every run
shows the viewers the same pixels. Prints one JSON line: the study and series
UIDs, the slice count and the folder.

usage: make_ct.py OUT_DIR [SLICES]
"""

import json
import os
import sys
import uuid

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

SIZE = 512
SPACING = 0.7
INTERCEPT = -1024


def uid(*parts):
    # 2.25 UIDs (PS3.5 B.2) from name-based UUIDs: the same study every run.
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'radhub:bench-viewer:v1:' + ':'.join(map(str, parts))).int}"


def slice_hu(k, n, yy, xx, rng):
    """HU of slice k of n as int16, plus noise."""
    t = k / max(1, n - 1)
    img = np.full((SIZE, SIZE), -1000.0, dtype=np.float32)  # air
    # Body: an ellipse that narrows towards both ends of the series.
    ax, ay = 165 - 30 * abs(t - 0.5), 120 - 20 * abs(t - 0.5)
    body = (xx / ax) ** 2 + (yy / ay) ** 2 <= 1
    img[body] = -90  # fat
    inner = (xx / (ax - 18)) ** 2 + (yy / (ay - 14)) ** 2 <= 1
    img[inner] = 40  # soft tissue
    # Lungs: two ellipses that grow then shrink along z.
    lr = 0.35 + 0.4 * np.sin(np.pi * t)
    for cx in (-65, 65):
        lung = ((xx - cx) / (45 * lr + 8)) ** 2 + ((yy + 5) / (70 * lr + 8)) ** 2 <= 1
        img[lung] = -850
    # Spine: a vertebral body with a marrow core, wandering slightly.
    sx, sy = 6 * np.sin(2 * np.pi * t), 70 + 4 * np.cos(2 * np.pi * t)
    r2 = (xx - sx) ** 2 + (yy - sy) ** 2
    img[r2 <= 22 ** 2] = 700
    img[r2 <= 14 ** 2] = 180
    # Ribs: arcs on a ring just inside the body, in four of every six slices.
    if k % 6 < 4:
        ring = np.abs(np.sqrt((xx / (ax - 24)) ** 2 + (yy / (ay - 20)) ** 2) - 1) < 0.035
        img[ring & (np.abs(xx) > 25)] = 900
    img += rng.normal(0, 15, img.shape).astype(np.float32)  # quantum noise
    return np.clip(np.rint(img), -1024, 3071).astype(np.int16)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[-1])
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) == 3 else 300
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20261202)
    c = (np.arange(SIZE, dtype=np.float32) - (SIZE - 1) / 2) * SPACING
    yy, xx = np.meshgrid(c, c, indexing="ij")  # mm from the centre, rows then columns
    study, series, frame = uid("study"), uid("series"), uid("frame of reference")
    origin = -(SIZE - 1) / 2 * SPACING
    for k in range(n):
        sop = uid("instance", k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20261202"
        ds.StudyTime = ds.SeriesTime = "091500"
        ds.ContentTime = f"0915{k % 60:02d}"
        ds.AccessionNumber = "RBDV0000001"
        ds.Modality = "CT"
        ds.Manufacturer = "radhub bench"
        ds.InstitutionName = "Dorset County Hospital"
        ds.ReferringPhysicianName = "JONES^ANNA"
        ds.StudyDescription = "CT CHEST ABDOMEN PELVIS"
        ds.SeriesDescription = "Axial 1mm"
        ds.PatientName = "VIEWER^BENCH"
        ds.PatientID = "9434765919"  # passes the NHS number Modulus 11 check
        ds.IssuerOfPatientID = "RBD"
        ds.PatientBirthDate = "19600101"
        ds.PatientSex = "F"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = "1"
        ds.KVP = "120"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyID = "1"
        ds.SeriesNumber = 2
        ds.InstanceNumber = k + 1
        z = -k * 1.0  # head first supine, slices stepping 1 mm towards the feet
        ds.ImagePositionPatient = [f"{origin:.2f}", f"{origin:.2f}", f"{z:.1f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = f"{z:.1f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = SIZE
        ds.PixelSpacing = [f"{SPACING}", f"{SPACING}"]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.RescaleIntercept = str(INTERCEPT)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PixelData = (slice_hu(k, n, yy, xx, rng) - INTERCEPT).astype("<i2").tobytes()
        ds.save_as(os.path.join(out, f"CT{k + 1:04d}.dcm"), enforce_file_format=True)
    print(json.dumps({"study": study, "series": series, "slices": n, "dir": out}))


if __name__ == "__main__":
    main()
