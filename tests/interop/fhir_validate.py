"""Validates FHIR R4 JSON with fhir.resources 6.4 (FHIR 4.0.1, pydantic 1),
installed apart by scripts/setup (its pydantic is not the system's).

Usage: fhir_validate.py FILE   (a resource or a Bundle; every entry's
resource is parsed as its own type). Prints "valid <type> <n entries>" or
the errors, exit 1.
"""

import json
import os
import sys

sys.path.insert(0, os.path.expanduser("~/.cache/radhub/fhir-r4"))

from fhir.resources import construct_fhir_element  # noqa: E402

data = json.load(open(sys.argv[1], encoding="utf-8"))
try:
    r = construct_fhir_element(data["resourceType"], data)
except Exception as e:  # pydantic's ValidationError lists every field
    print(f"invalid {data.get('resourceType')}: {e}")
    sys.exit(1)
entries = len(getattr(r, "entry", None) or [])
print(f"valid {r.resource_type} {entries}")
