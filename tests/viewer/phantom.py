"""A CT measurement phantom for the viewer's browser tests and bench.

Axial slices of a water cylinder (0 HU) in air (-1000 HU) with a 60 HU
square insert and two 1000 HU markers whose centres lie a known distance
apart: `--marker-mm` along the row through the image centre. Stored
unsigned with Rescale Intercept -1024, explicit VR little endian, one file
per slice named by slice number. Usage:

  phantom.py OUT --slices N --size PX --spacing MM --step MM --patient-id ID
             --issuer SITE --nhs NHS --name PN --study-uid UID --date YYYYMMDD
             [--description TEXT] [--series-uid UID] [--accession A]
"""
import argparse
import os

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--slices", type=int, default=20)
p.add_argument("--size", type=int, default=256)
p.add_argument("--spacing", type=float, default=0.5)
p.add_argument("--step", type=float, default=2.0)
p.add_argument("--marker-mm", type=float, default=80.0)
p.add_argument("--patient-id", required=True)
p.add_argument("--issuer", required=True)
p.add_argument("--nhs", required=True)
p.add_argument("--name", required=True)
p.add_argument("--birth", default="19600412")
p.add_argument("--sex", default="F")
p.add_argument("--study-uid", required=True)
p.add_argument("--series-uid", default=None)
p.add_argument("--date", required=True)
p.add_argument("--description", default="CT HEAD")
p.add_argument("--accession", default="")
p.add_argument("--frame-of-reference", default=None)
a = p.parse_args()

os.makedirs(a.out, exist_ok=True)
n = a.size
series_uid = a.series_uid or generate_uid()
frame_of_ref = a.frame_of_reference or generate_uid()
yy, xx = np.mgrid[0:n, 0:n]
# Structures on whole pixels: marker k covers columns m-1..m+1, so its
# centre is at continuous column m + 0.5 (pixel i spans [i, i + 1)).
c = n // 2
rng = np.random.default_rng(7)
half_px = int(round(a.marker_mm / a.spacing / 2.0))
for k in range(a.slices):
    hu = np.full((n, n), -1000.0)
    hu[(xx - c + 0.5) ** 2 + (yy - c + 0.5) ** 2 <= (0.42 * n) ** 2] = 0.0
    q = n // 8
    # The insert: rows c-3q/2..c-q/2, columns c-q/2..c+q/2.
    hu[c - 3 * q // 2 : c - q // 2, c - q // 2 : c + q // 2] = 60.0
    for m in (c - half_px, c + half_px):
        hu[c - 1 : c + 2, m - 1 : m + 2] = 1000.0
    # A slice-dependent bar, so slices differ (and scrolling shows it).
    hu[c + q : c + q + 4, c - q : c - q + max(1, int(2 * q * (k + 1) / a.slices))] = 300.0
    hu += rng.normal(0.0, 2.0, size=hu.shape) * (hu > -1000)
    stored = np.clip(np.round(hu + 1024), 0, 4095).astype(np.uint16)

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
    sop = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CT_IMAGE
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = a.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_of_ref
    ds.PatientName = a.name
    ds.PatientID = a.patient_id
    ds.IssuerOfPatientID = a.issuer
    ds.PatientBirthDate = a.birth
    ds.PatientSex = a.sex
    other = Dataset()
    other.PatientID = a.nhs
    other.IssuerOfPatientID = "NHS"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.StudyDate = a.date
    ds.StudyTime = "101500"
    ds.SeriesDate = a.date
    ds.AccessionNumber = a.accession
    ds.StudyDescription = a.description
    ds.SeriesDescription = "AXIAL PHANTOM"
    ds.BodyPartExamined = "HEAD"
    ds.Modality = "CT"
    ds.SeriesNumber = 2
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [-c * a.spacing, -c * a.spacing, k * a.step]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = k * a.step
    ds.SliceThickness = a.step
    ds.PixelSpacing = [a.spacing, a.spacing]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = n
    ds.Columns = n
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = [40, 400]
    ds.WindowWidth = [400, 1800]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "BONE"]
    ds.PixelData = stored.tobytes()
    ds.save_as(os.path.join(a.out, f"{k + 1:04d}.dcm"), enforce_file_format=True)
