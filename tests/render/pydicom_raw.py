"""Reference stored values for radhub's render tests: pydicom (with numpy)
decodes each file given on the command line, without colour conversion,
and writes every frame's samples as little endian int64 to OUT/<name>.i64.
Prints one JSON object: name -> {"frames", "rows", "cols", "samples"} or
{"error"}. Only pydicom's own decoders are used (native, deflate, RLE);
files needing a plugin report an error and are not compared."""

import json
import os
import sys

import numpy as np
from pydicom import dcmread
from pydicom.pixels import pixel_array

out_dir, files = sys.argv[1], sys.argv[2:]
result = {}
for path in files:
    name = os.path.basename(path)
    try:
        ds = dcmread(path)
        arr = pixel_array(ds, raw=True, decoding_plugin="pydicom")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1))
        arr = np.asarray(arr).astype(np.int64)
        arr.tofile(os.path.join(out_dir, name + ".i64"))
        result[name] = {"frames": frames, "rows": int(ds.Rows), "cols": int(ds.Columns), "samples": samples, "count": int(arr.size)}
    except Exception as e:  # noqa: BLE001 - any failure means "no reference"
        result[name] = {"error": f"{type(e).__name__}: {e}"}
json.dump(result, sys.stdout)
