"""Test data for scripts/bench-http, written once with pydicom and cached.

* 10,000 studies of 2,000 patients (5 studies each), one small image each
  (64x64, 16-bit; CT, MR or CR with the matching SOP class), study dates
  spread evenly over 2023-2024, surnames from a list of 60 common British ones
  with skewed frequencies (so `SURNAME*` matches 100-700 studies).
* One more study (patient BENCH600, dated 2025-01-15, outside the query
  ranges) with one CT series of 600 slices, 512x512, 16-bit, with the
  geometry, rescale and window attributes of a real axial CT.

Explicit VR little endian, proper file meta, UIDs of the form 2.25.<128-bit
integer>. Everything comes from one seeded random generator, so the cache
(${XDG_CACHE_HOME:-~/.cache}/radhub/bench-http) is reused as long as the
manifest's version matches. The manifest also holds the ground truth the
benchmark checks every answer against.
"""

import datetime
import json
import os
import random
import shutil

from bench_util import die, log

MANIFEST_VERSION = "bench-http v1"
SEED = 20261125
PATIENTS = 2000
STUDIES_PER_PATIENT = 5
SMALL = 64
SERIES_SLICES = 600
SERIES_SIZE = 512
FIRST_DAY = datetime.date(2023, 1, 1)
LAST_DAY = datetime.date(2024, 12, 31)
PER_DIR = 1000

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
}
MODALITY_WEIGHTS = (("CT", 40), ("MR", 25), ("CR", 35))
DESCRIPTIONS = {
    "CT": ["CT HEAD WITHOUT CONTRAST", "CT CHEST ABDOMEN PELVIS WITH CONTRAST", "CT PULMONARY ANGIOGRAM",
           "CT KUB", "CT CHEST HIGH RESOLUTION", "CT ABDOMEN PELVIS"],
    "MR": ["MRI BRAIN", "MRI LUMBAR SPINE", "MRI KNEE LEFT", "MRI KNEE RIGHT", "MRI CERVICAL SPINE",
           "MRI PROSTATE"],
    "CR": ["XR CHEST PA", "XR HAND RIGHT", "XR KNEE LEFT", "XR PELVIS AP", "XR FOOT LEFT", "XR SHOULDER RIGHT"],
}
BODY_PART = {"HEAD": "HEAD", "BRAIN": "HEAD", "CHEST": "CHEST", "ABDOMEN": "ABDOMEN", "KUB": "ABDOMEN",
             "SPINE": "SPINE", "KNEE": "KNEE", "HAND": "HAND", "PELVIS": "PELVIS", "FOOT": "FOOT",
             "SHOULDER": "SHOULDER", "PROSTATE": "PELVIS", "PULMONARY": "CHEST"}
# Most common first; weights fall linearly from 3 to 1.
SURNAMES = """SMITH JONES WILLIAMS TAYLOR BROWN DAVIES EVANS WILSON THOMAS JOHNSON ROBERTS ROBINSON
THOMPSON WRIGHT WALKER WHITE EDWARDS HUGHES GREEN HALL LEWIS HARRIS CLARKE PATEL JACKSON WOOD TURNER
MARTIN COOPER HILL WARD MORRIS MOORE CLARK LEE KING BAKER HARRISON MORGAN ALLEN JAMES SCOTT PHILLIPS
WATSON DAVIS PARKER PRICE BENNETT YOUNG GRIFFITHS MITCHELL KELLY COOK CARTER RICHARDSON BAILEY COLLINS
BELL SHAW MURPHY""".split()
GIVEN = {
    "M": "JOHN DAVID MICHAEL PAUL ANDREW MARK PETER JAMES RICHARD STEPHEN ROBERT CHRISTOPHER ANTHONY "
         "GRAHAM IAN KEVIN GARY SIMON THOMAS DANIEL MATTHEW GEORGE OLIVER HARRY JACK WILLIAM ALAN "
         "COLIN BRIAN KEITH".split(),
    "F": "SUSAN MARGARET SARAH ELIZABETH HELEN JULIE CLAIRE KAREN PATRICIA JANE EMMA MARY LINDA "
         "CAROL ALISON RACHEL LOUISE JOANNE NICOLA AMANDA OLIVIA EMILY JESSICA SOPHIE CHARLOTTE "
         "HANNAH LUCY ANNE JEAN BARBARA".split(),
}
INSTITUTIONS = ["ROYAL BOURNEMOUTH HOSPITAL", "POOLE HOSPITAL", "DORSET COUNTY HOSPITAL"]
PHYSICIANS = ["AHMED^S", "BROOKS^T", "CHAN^L", "DIXON^R", "ELLIS^K", "FRASER^M", "GRANT^P", "HOLT^J"]


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "radhub", "bench-http")


def _uid(rng):
    return f"2.25.{rng.getrandbits(128)}"


def _plan():
    """The whole data set as plain values (no pixels), from the seed alone."""
    rng = random.Random(SEED)
    n = len(SURNAMES)
    weights = [3.0 - 2.0 * i / (n - 1) for i in range(n)]
    patient_numbers = rng.sample(range(1000000, 9999999), PATIENTS)
    patients = []
    for i in range(PATIENTS):
        sex = rng.choice("MF")
        surname = rng.choices(SURNAMES, weights)[0]
        birth = FIRST_DAY - datetime.timedelta(days=rng.randrange(18 * 365, 90 * 365))
        patients.append({
            "id": f"H{patient_numbers[i]}",
            "name": f"{surname}^{rng.choice(GIVEN[sex])}",
            "surname": surname,
            "sex": sex,
            "birth": birth.strftime("%Y%m%d"),
        })
    days = (LAST_DAY - FIRST_DAY).days + 1
    accessions = rng.sample(range(10000000, 99999999), PATIENTS * STUDIES_PER_PATIENT)
    studies = []
    for k in range(PATIENTS * STUDIES_PER_PATIENT):
        p = patients[k // STUDIES_PER_PATIENT]
        modality = rng.choices([m for m, _w in MODALITY_WEIGHTS], [w for _m, w in MODALITY_WEIGHTS])[0]
        date = FIRST_DAY + datetime.timedelta(days=rng.randrange(days))
        seconds = rng.randrange(7 * 3600, 20 * 3600)
        studies.append({
            "study_uid": _uid(rng),
            "series_uid": _uid(rng),
            "sop_uid": _uid(rng),
            "patient": k // STUDIES_PER_PATIENT,
            "modality": modality,
            "date": date.strftime("%Y%m%d"),
            "time": f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
            "accession": f"A{accessions[k]}",
            "description": rng.choice(DESCRIPTIONS[modality]),
            "institution": rng.choice(INSTITUTIONS),
            "referrer": rng.choice(PHYSICIANS),
            "study_id": str(rng.randrange(1, 99999)),
            "seed": rng.getrandbits(32),
        })
    big = {
        "study_uid": _uid(rng),
        "series_uid": _uid(rng),
        "frame_uid": _uid(rng),
        "sop_uids": [_uid(rng) for _ in range(SERIES_SLICES)],
        "patient_id": "BENCH600",
        "patient_name": "CTSERIES^BENCH",
        "date": "20250115",
        "accession": "A00000600",
    }
    return patients, studies, big


def _file_meta(sop_class, sop_uid):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = EXPLICIT_VR_LE
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "RADHUB_BENCH"
    return meta


def _small_file(path, p, s, np):
    from pydicom.dataset import Dataset
    ds = Dataset()
    ds.file_meta = _file_meta(SOP_CLASS[s["modality"]], s["sop_uid"])
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"] + (["AXIAL"] if s["modality"] == "CT" else [])
    ds.InstanceCreationDate = s["date"]
    ds.SOPClassUID = SOP_CLASS[s["modality"]]
    ds.SOPInstanceUID = s["sop_uid"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = s["date"]
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = s["time"]
    ds.AccessionNumber = s["accession"]
    ds.Modality = s["modality"]
    ds.Manufacturer = "RADHUB BENCH"
    ds.InstitutionName = s["institution"]
    ds.ReferringPhysicianName = s["referrer"]
    ds.StudyDescription = s["description"]
    ds.SeriesDescription = s["description"].split(" ", 1)[-1]
    ds.PatientName = p["name"]
    ds.PatientID = p["id"]
    ds.PatientBirthDate = p["birth"]
    ds.PatientSex = p["sex"]
    part = next((v for k, v in BODY_PART.items() if k in s["description"]), "OTHER")
    ds.BodyPartExamined = part
    ds.StudyInstanceUID = s["study_uid"]
    ds.SeriesInstanceUID = s["series_uid"]
    ds.StudyID = s["study_id"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = SMALL
    if s["modality"] == "CR":
        ds.ImagerPixelSpacing = [0.15, 0.15]
    else:
        ds.PixelSpacing = [0.5, 0.5]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if s["modality"] == "CT":
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.WindowCenter = 40
        ds.WindowWidth = 400
    y, x = np.mgrid[0:SMALL, 0:SMALL]
    pixels = ((x * 37 + y * 11 + s["seed"]) % 4096).astype("<u2")
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def _ct_slice(k, rng_np, np):
    """A 512x512 axial slice of a simple torso phantom, stored values (HU + 1024), 12 bits."""
    n = SERIES_SIZE
    y, x = np.ogrid[0:n, 0:n]
    cx, cy = n / 2, n / 2 + 20
    t = k / SERIES_SLICES
    hu = np.full((n, n), -1000.0)
    body = ((x - cx) / (200 - 20 * t)) ** 2 + ((y - cy) / (150 - 10 * t)) ** 2 <= 1
    hu[body] = 40
    for side in (-1, 1):  # lungs, larger towards the middle of the series
        r = 60 + 30 * np.sin(np.pi * t)
        lung = ((x - cx - side * 85) / r) ** 2 + ((y - cy + 10) / (r * 1.3)) ** 2 <= 1
        hu[lung] = -820
    spine = (x - cx) ** 2 + (y - cy - 110) ** 2 <= 22 ** 2
    hu[spine] = 700
    hu += rng_np.normal(0, 12, (n, n))
    return np.clip(hu + 1024, 0, 4095).astype("<u2")


def _series_file(path, big, k, rng_np, np):
    from pydicom.dataset import Dataset
    sop_uid = big["sop_uids"][k]
    ds = Dataset()
    ds.file_meta = _file_meta(SOP_CLASS["CT"], sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = SOP_CLASS["CT"]
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = big["date"]
    ds.StudyTime = "101500"
    ds.SeriesTime = "102003"
    ds.AcquisitionTime = ds.ContentTime = f"1020{3 + k // 100:02d}.{k % 100:02d}0000"
    ds.AccessionNumber = big["accession"]
    ds.Modality = "CT"
    ds.Manufacturer = "RADHUB BENCH"
    ds.ManufacturerModelName = "PHANTOM 600"
    ds.InstitutionName = INSTITUTIONS[0]
    ds.ReferringPhysicianName = PHYSICIANS[0]
    ds.StationName = "CT01"
    ds.StudyDescription = "CT CHEST ABDOMEN PELVIS WITH CONTRAST"
    ds.SeriesDescription = "AXIAL 0.625MM SOFT TISSUE"
    ds.PatientName = big["patient_name"]
    ds.PatientID = big["patient_id"]
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.ScanOptions = "HELICAL MODE"
    ds.SliceThickness = "0.625"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = "360"
    ds.DistanceSourceToDetector = "946.746"
    ds.DistanceSourceToPatient = "538.52"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "250"
    ds.Exposure = "125"
    ds.FilterType = "BODY FILTER"
    ds.GeneratorPower = "30000"
    ds.FocalSpots = "0.7"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "FFS"
    ds.StudyInstanceUID = big["study_uid"]
    ds.SeriesInstanceUID = big["series_uid"]
    ds.StudyID = "600"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = k + 1
    z = -100.0 - 0.625 * k
    ds.ImagePositionPatient = ["-180", "-180", f"{z:.3f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = big["frame_uid"]
    ds.PositionReferenceIndicator = "SN"
    ds.SliceLocation = f"{z:.3f}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = SERIES_SIZE
    ds.PixelSpacing = ["0.703125", "0.703125"]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.PixelData = _ct_slice(k, rng_np, np).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _expected(patients, studies, big):
    """Per study: what the QIDO-RS queries match on (ground truth)."""
    rows = [{"uid": s["study_uid"], "patient_id": patients[s["patient"]]["id"],
             "name": patients[s["patient"]]["name"], "date": s["date"]} for s in studies]
    rows.append({"uid": big["study_uid"], "patient_id": big["patient_id"], "name": big["patient_name"],
                 "date": big["date"]})
    return rows


def _load(directory):
    try:
        with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if manifest.get("version") != MANIFEST_VERSION:
        return None
    for rel, size in manifest["files"]:
        try:
            if os.stat(os.path.join(directory, rel)).st_size != size:
                return None
        except OSError:
            return None
    return manifest


def ensure_data():
    """The cached data set, generating it first if needed. Returns (directory, manifest).

    manifest: version, files [[relative path, size]], studies [{uid, patient_id,
    name, date}] (10,001 incl. the big one), series {study_uid, series_uid,
    count, dir}, small_dir."""
    directory = cache_dir()
    manifest = _load(directory)
    if manifest is not None:
        log(f"test data: {len(manifest['files']):,} files cached in {directory}")
        return directory, manifest
    try:
        import numpy as np
        import pydicom
    except ImportError as e:
        die(f"generating the test data needs pydicom 3 and numpy ({e}): scripts/setup")
    if int(pydicom.__version__.split(".")[0]) < 3:
        die(f"generating the test data needs pydicom 3 (found {pydicom.__version__}): scripts/setup")

    patients, studies, big = _plan()
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = directory + f".partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    files = []
    try:
        log(f"test data: writing {len(studies):,} small studies with pydicom {pydicom.__version__} "
            f"(once; cached in {directory})")
        for k, s in enumerate(studies):
            rel = os.path.join("studies", f"{k // PER_DIR:02d}", f"{k:05d}.dcm")
            path = os.path.join(staging, rel)
            if k % PER_DIR == 0:
                os.makedirs(os.path.dirname(path))
                if k:
                    log(f"test data: {k:,} studies")
            _small_file(path, patients[s["patient"]], s, np)
            files.append([rel, os.path.getsize(path)])
        log(f"test data: writing the {SERIES_SLICES}-slice CT series ({SERIES_SIZE}x{SERIES_SIZE})")
        os.makedirs(os.path.join(staging, "series600"))
        rng_np = np.random.default_rng(SEED)
        for k in range(SERIES_SLICES):
            rel = os.path.join("series600", f"{k:04d}.dcm")
            path = os.path.join(staging, rel)
            _series_file(path, big, k, rng_np, np)
            files.append([rel, os.path.getsize(path)])
        manifest = {
            "version": MANIFEST_VERSION,
            "pydicom": pydicom.__version__,
            "small_dir": "studies",
            "series": {"study_uid": big["study_uid"], "series_uid": big["series_uid"],
                       "count": SERIES_SLICES, "dir": "series600"},
            "studies": _expected(patients, studies, big),
            "files": files,
        }
        with open(os.path.join(staging, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, separators=(",", ":"))
        shutil.rmtree(directory, ignore_errors=True)
        os.rename(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest = _load(directory)
    if manifest is None:
        die(f"test data cache {directory} is incomplete right after writing it")
    log(f"test data: cached {len(files):,} files in {directory}")
    return directory, manifest
