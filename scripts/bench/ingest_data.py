"""Test data for scripts/bench-ingest: 1,000 CT slices (512x512, 16-bit).

The slices come from radhub's own generator (`radhub testdata`), which writes
mixed modalities; we keep only CT Image Storage objects with 512x512 16-bit
single-sample pixels in an uncompressed transfer syntax, checked with one
batched `dcmdump` call, and cache exactly 1,000 of them, split into groups
g0..g3 (one per parallel association), with a manifest.
"""

import os
import re
import shutil
import subprocess

from bench_util import dcmtk, die, log

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
UNCOMPRESSED_TS = {
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1",  # explicit VR little endian
}
MANIFEST_VERSION = "bench-ct v1"
MAX_SLICES = 100
PATIENT_STEPS = (8, 12, 20, 32, 64)
MIN_CT_BYTES = 512 * 512 * 2

_ELEMENT = re.compile(r"^\(([0-9a-fA-F]{4}),([0-9a-fA-F]{4})\) (\w\w) (.*?)\s+#")


def cache_dir(count):
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "radhub", f"bench-ct-{count}")


def load_cached(directory, count, groups):
    """Returns [(path, size)] if the cache is complete and intact, else None."""
    manifest = os.path.join(directory, "manifest.tsv")
    try:
        with open(manifest, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    if not lines or lines[0] != f"# {MANIFEST_VERSION} count={count} groups={groups}":
        return None
    files = []
    for line in lines[1:]:
        rel, size, _uid = line.split("\t")
        path = os.path.join(directory, rel)
        try:
            if os.stat(path).st_size != int(size):
                return None
        except OSError:
            return None
        files.append((path, int(size)))
    if len(files) != count:
        return None
    return files


def group_dirs(directory, groups):
    return [os.path.join(directory, f"g{i}") for i in range(groups)]


def _natural_key(path):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path)]


def _dump(paths, env):
    """Header attributes of many files, from batched dcmdump calls."""
    tags = ["0002,0010", "0008,0016", "0008,0018", "0028,0002", "0028,0010", "0028,0011", "0028,0100"]
    info = {}
    for start in range(0, len(paths), 400):
        chunk = paths[start:start + 400]
        cmd = [dcmtk("dcmdump"), "-q", "-Un", "-M", "+F"]
        for t in tags:
            cmd += ["+P", t]
        out = subprocess.run(cmd + chunk, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, check=False)
        if out.returncode != 0:
            die(f"dcmdump failed on generated test data: {out.stderr.strip()[:500]}")
        current = None
        for line in out.stdout.splitlines():
            if line.startswith("# dcmdump ("):
                current = info.setdefault(line.split("): ", 1)[1], {})
                continue
            m = _ELEMENT.match(line)
            if m and current is not None:
                tag = f"{m.group(1)},{m.group(2)}".lower()
                value = m.group(4).strip()
                if value.startswith("[") and value.endswith("]"):
                    value = value[1:-1]
                current[tag] = value
    return info


def _is_bench_ct(attrs):
    return (attrs.get("0008,0016") == CT_IMAGE_STORAGE
            and attrs.get("0002,0010") in UNCOMPRESSED_TS
            and attrs.get("0028,0010") == "512"
            and attrs.get("0028,0011") == "512"
            and attrs.get("0028,0100") == "16"
            and attrs.get("0028,0002") == "1"
            and bool(attrs.get("0008,0018")))


def ensure_ct_set(radhub_bin, count, groups, env):
    """The cached CT set, generating it first if needed. Returns (dir, [(path, size)])."""
    directory = cache_dir(count)
    files = load_cached(directory, count, groups)
    if files is not None:
        log(f"test data: {count} CT slices cached in {directory}")
        return directory, files
    if radhub_bin is None or not os.access(radhub_bin, os.X_OK):
        die(f"no cached test data in {directory} and no radhub binary to generate it")

    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    gen = os.path.join(parent, f".bench-ct-gen-{os.getpid()}")
    staging = directory + f".partial-{os.getpid()}"
    try:
        chosen = None
        for patients in PATIENT_STEPS:
            shutil.rmtree(gen, ignore_errors=True)
            log(f"test data: radhub testdata --patients {patients} --max-slices {MAX_SLICES} --ct-size 512")
            subprocess.run([radhub_bin, "testdata", "--out", gen, "--patients", str(patients),
                            "--max-slices", str(MAX_SLICES), "--ct-size", "512"],
                           stdout=subprocess.DEVNULL, check=True, env=env)
            candidates = []
            for root, _dirs, names in os.walk(gen):
                for name in names:
                    path = os.path.join(root, name)
                    if os.path.getsize(path) >= MIN_CT_BYTES:
                        candidates.append(path)
            candidates.sort(key=_natural_key)
            info = _dump(candidates, env)
            seen = set()
            selected = []
            for path in candidates:
                attrs = info.get(path, {})
                if _is_bench_ct(attrs) and attrs["0008,0018"] not in seen:
                    seen.add(attrs["0008,0018"])
                    selected.append((path, attrs["0008,0018"]))
            log(f"test data: {len(selected)} CT 512x512x16 slices from {patients} patients")
            if len(selected) >= count:
                chosen = selected[:count]
                break
        if chosen is None:
            die(f"radhub testdata gave fewer than {count} CT slices even with {PATIENT_STEPS[-1]} patients")

        shutil.rmtree(staging, ignore_errors=True)
        for g in group_dirs(staging, groups):
            os.makedirs(g)
        per_group = -(-count // groups)
        lines = [f"# {MANIFEST_VERSION} count={count} groups={groups}"]
        for k, (path, uid) in enumerate(chosen):
            rel = f"g{k // per_group}/{k:04d}.dcm"
            os.rename(path, os.path.join(staging, rel))
            lines.append(f"{rel}\t{os.path.getsize(os.path.join(staging, rel))}\t{uid}")
        with open(os.path.join(staging, "manifest.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        os.rename(staging, directory)
    finally:
        shutil.rmtree(gen, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    files = load_cached(directory, count, groups)
    if files is None:
        die(f"test data cache {directory} is incomplete right after writing it")
    log(f"test data: cached {count} CT slices in {directory}")
    return directory, files
