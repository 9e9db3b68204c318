"""Writes variants of pydicom test files that exercise parts of the display
pipeline pydicom's set lacks: MONOCHROME1, the SIGMOID VOI function, a
Modality LUT Sequence, a VOI LUT Sequence and a segmented palette.
Usage: variants.py TEST_FILES_DIR OUT_DIR; prints the names written."""

import os
import sys

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

src, out = sys.argv[1], sys.argv[2]
written = []


def save(ds, name):
    ds.save_as(os.path.join(out, name), enforce_file_format=True)
    written.append(name)


ds = dcmread(os.path.join(src, "CT_small.dcm"))
ds.PhotometricInterpretation = "MONOCHROME1"
save(ds, "mono1_derived.dcm")
ds.WindowCenter, ds.WindowWidth = 60, 500
save(ds, "mono1_window.dcm")

ds = dcmread(os.path.join(src, "CT_small.dcm"))
ds.WindowCenter, ds.WindowWidth = 40, 400
ds.VOILUTFunction = "SIGMOID"
save(ds, "sigmoid.dcm")

ds = dcmread(os.path.join(src, "examples_overlay.dcm"))
for kw in ("WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept"):
    if kw in ds:
        delattr(ds, kw)
item = Dataset()
item.add_new(0x00283002, "US", [4096, 0, 16])
item.add_new(0x00283004, "LO", "US")
curve = (65535 * (np.arange(4096) / 4095.0) ** 0.5).round().astype("<u2")
item.add_new(0x00283006, "OW", curve.tobytes())
ds.ModalityLUTSequence = [item]
save(ds, "modlut.dcm")

ds = dcmread(os.path.join(src, "examples_overlay.dcm"))
for kw in ("WindowCenter", "WindowWidth"):
    if kw in ds:
        delattr(ds, kw)
item = Dataset()
item.add_new(0x00283002, "US", [1024, 0, 12])
gamma = (4095 * (np.arange(1024) / 1023.0) ** 0.6).round().astype("<u2")
item.add_new(0x00283006, "OW", gamma.tobytes())
ds.VOILUTSequence = [item]
save(ds, "voilut.dcm")

ds = dcmread(os.path.join(src, "examples_palette.dcm"))
for i, (d, data, seg) in enumerate(((0x00281101, 0x00281201, 0x00281221), (0x00281102, 0x00281202, 0x00281222), (0x00281103, 0x00281203, 0x00281223))):
    n, first, bits = ds[d].value
    n = n or 65536
    raw = ds[data].value
    lut = np.frombuffer(raw, dtype="<u2" if bits == 16 or len(raw) >= 2 * n else "u1").astype(int)[:n]
    # Discrete first entry, then linear segments every 8 entries.
    words = [0, 1, int(lut[0])]
    for k in range(8, n, 8):
        words += [1, 8, int(lut[k])]
    if (n - 1) % 8:
        words += [1, (n - 1) % 8, int(lut[n - 1])]
    del ds[data]
    ds.add_new(seg, "OW", np.array(words, dtype="<u2").tobytes())
save(ds, "palette_segmented.dcm")
written.remove("palette_segmented.dcm")
# DCMTK does not expand segmented palettes: pydicom is the reference here.
from pydicom.pixels import apply_color_lut, pixel_array

rgb = apply_color_lut(pixel_array(os.path.join(out, "palette_segmented.dcm"), raw=True), ds)
bits = ds.RedPaletteColorLookupTableDescriptor[2]
(rgb >> (bits - 8) if bits > 8 else rgb).astype("u1").tofile(os.path.join(out, "palette_segmented.rgb"))

print(" ".join(written))
