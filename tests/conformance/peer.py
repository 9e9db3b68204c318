"""pynetdicom and pydicom as radhub's peer, for tests/conformance_dimse.rs.

Each subcommand prints one JSON object on stdout for the Rust test to
assert on; statuses are integers exactly as received.

    peer.py make OUT_DIR                       instances real archives hold (pydicom only)
    peer.py --port P [--ae AE] store FILE...   C-STORE each file as-is (its class, its syntax)
    peer.py --port P [--ae AE] get --study UID --out DIR FILE...
                                               C-GET of a study, taking the SCP role for each
                                               file's class in its syntax; data sets saved raw
    peer.py --port P [--ae AE] echo            C-ECHO, with what the acceptor said of itself
    peer.py --port P [--ae AE] find --level L [--charset CS] [--ext HEX] --key K=V ...
    peer.py --port P [--ae AE] move --dest AE --scp-port Q --study UID
                                               C-MOVE to a storage SCP run here as AE,
                                               which records each requestor's identity
"""

import argparse
import json
import os
import socket
import sys
import warnings

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import generate_uid
from pynetdicom import AE, _config, build_role, evt, transport
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

warnings.simplefilter("ignore")
_config.STORE_SEND_CHUNKED_DATASET = True
# pydicom must not refuse what it cannot decode: files go as they are.
_config.UNRESTRICTED_STORAGE_SERVICE = True

_create_socket = transport.AssociationSocket._create_socket


def _create_socket_nodelay(self, address):
    sock = _create_socket(self, address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


transport.AssociationSocket._create_socket = _create_socket_nodelay

SIEMENS_CSA_NON_IMAGE = "1.3.12.2.1107.5.9.1"
GE_PRIVATE = "1.2.840.113619.4.27"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"
JPEG_XL = "1.2.840.10008.1.2.4.112"
HEVC = "1.2.840.10008.1.2.4.107"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def status_of(rsp):
    return int(rsp.Status) if rsp is not None and "Status" in rsp else None


def base(sop_class, ts, study, series, n):
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Conformance^Zoë"
    ds.PatientID = "CONF001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyDate = "20260101"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "CONF-ACC-1"
    ds.StudyID = "1"
    ds.Modality = "OT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = n
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    ds.file_meta = meta
    return ds


def encapsulated(ds, frame):
    """Pixel data as one encapsulated frame: any bytes, the syntax in the meta."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = 1
    ds.PixelData = pydicom.encaps.encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def make(out):
    os.makedirs(out, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    made = []

    # Siemens CSA Non-Image: a private class with private elements only beside the header.
    ds = base(SIEMENS_CSA_NON_IMAGE, EXPLICIT_LE, study, series, 1)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SPECTROSCOPY"]
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x08, "CS", "SPEC NUM 4")
    block.add_new(0x10, "OB", b"SV10\x04\x03\x02\x01" + bytes(range(64)))
    made.append(("csa_non_image.dcm", ds))

    # A GE private class, implicit VR.
    ds = base(GE_PRIVATE, "1.2.840.10008.1.2", study, series, 2)
    block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    block.add_new(0x01, "SS", 7)
    made.append(("ge_private.dcm", ds))

    for name, ts, n in (("htj2k.dcm", HTJ2K_LOSSLESS, 3), ("htj2k_rpcl.dcm", HTJ2K_RPCL, 4), ("jpegxl.dcm", JPEG_XL, 5), ("hevc.dcm", HEVC, 6)):
        ds = base("1.2.840.10008.5.1.4.1.1.7", ts, study, series, n)
        # Not a real codestream: radhub must neither need nor try to decode it.
        encapsulated(ds, bytes([0xFF, 0x4F, 0xFF, 0x51]) + ts.encode() + bytes(range(40)))
        made.append((name, ds))

    files = []
    for name, ds in made:
        path = os.path.join(out, name)
        ds.save_as(path, enforce_file_format=True, implicit_vr=ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2", little_endian=True)
        files.append({"file": path, "sop": ds.SOPInstanceUID, "sop_class": ds.SOPClassUID, "ts": ds.file_meta.TransferSyntaxUID, "study": study, "series": series})
    return {"files": files, "study": study}


def ae_for(args):
    ae = AE(ae_title=args.ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


def identity(assoc):
    acc = assoc.acceptor
    name = acc.implementation_version_name
    return {"implementation_class_uid": str(acc.implementation_class_uid), "implementation_version_name": str(name) if name else None}


def associate(ae, args, **kw):
    if args.bind:
        kw["bind_address"] = (args.bind, 0)
    assoc = ae.associate("127.0.0.1", args.port, ae_title="RADHUB", **kw)
    out = {"established": assoc.is_established, "rejected": assoc.is_rejected, "aborted": assoc.is_aborted}
    if assoc.is_rejected and assoc.acceptor.primitive is not None:
        p = assoc.acceptor.primitive
        out["reject"] = {"result": p.result, "source": p.result_source, "reason": p.diagnostic}
    return assoc, out


def store(args):
    ae = ae_for(args)
    files = [pydicom.dcmread(f, stop_before_pixels=False) for f in args.files]
    for ds in files:
        ae.add_requested_context(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])
    assoc, out = associate(ae, args)
    if not assoc.is_established:
        return out
    out.update(identity(assoc))
    out["contexts"] = [{"class": c.abstract_syntax, "ts": c.transfer_syntax[0] if c.transfer_syntax else None, "accepted": c.result == 0} for c in assoc.accepted_contexts]
    out["results"] = []
    for path, ds in zip(args.files, files):
        try:
            rsp = assoc.send_c_store(path)
            r = {"file": path, "status": status_of(rsp), "comment": str(rsp.get("ErrorComment", "")) if rsp is not None else None}
        except ValueError as e:
            r = {"file": path, "status": None, "error": str(e)}
        out["results"].append(r)
    assoc.release()
    return out


def get(args):
    ae = ae_for(args)
    files = [pydicom.dcmread(f, stop_before_pixels=True) for f in args.files]
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles, seen = [], set()
    for ds in files:
        key = (ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        if key not in seen:
            seen.add(key)
            ae.add_requested_context(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])
        if ds.SOPClassUID not in [r.sop_class_uid for r in roles]:
            roles.append(build_role(ds.SOPClassUID, scp_role=True))
    os.makedirs(args.out, exist_ok=True)
    received = []

    def on_store(event):
        raw = event.request.DataSet.getvalue()
        sop = event.request.AffectedSOPInstanceUID
        with open(os.path.join(args.out, sop + ".raw"), "wb") as f:
            f.write(raw)
        received.append({"sop": str(sop), "class": str(event.request.AffectedSOPClassUID), "ts": str(event.context.transfer_syntax), "bytes": len(raw)})
        return 0x0000

    assoc, out = associate(ae, args, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if not assoc.is_established:
        return out
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = args.study
    final = None
    for status, _ in assoc.send_c_get(ds, StudyRootQueryRetrieveInformationModelGet):
        if status is not None and "Status" in status and int(status.Status) not in (0xFF00, 0xFF01):
            final = {k: int(status[k].value) for k in ("Status", "NumberOfCompletedSuboperations", "NumberOfFailedSuboperations", "NumberOfWarningSuboperations") if k in status}
    assoc.release()
    out["final"] = final
    out["received"] = received
    return out


def echo(args):
    ae = ae_for(args)
    ae.add_requested_context(Verification)
    for uid in args.propose:
        ae.add_requested_context(uid, ["1.2.840.10008.1.2.1"])
    assoc, out = associate(ae, args)
    if assoc.is_established:
        out.update(identity(assoc))
        out["proposed"] = {str(c.abstract_syntax): c.result == 0 for c in assoc.accepted_contexts + assoc.rejected_contexts if c.abstract_syntax in args.propose}
        out["status"] = status_of(assoc.send_c_echo())
        assoc.release()
    return out


def find(args):
    ae = ae_for(args)
    model = PatientRootQueryRetrieveInformationModelFind if args.model == "patient" else StudyRootQueryRetrieveInformationModelFind
    ae.add_requested_context(model)
    ext = []
    if args.ext is not None:
        item = SOPClassExtendedNegotiation()
        item.sop_class_uid = model
        item.service_class_application_information = bytes.fromhex(args.ext)
        ext.append(item)
    assoc, out = associate(ae, args, ext_neg=ext)
    if not assoc.is_established:
        return out
    out["ext_neg_answer"] = None
    for uid, info in (assoc.acceptor.sop_class_extended or {}).items():
        if uid == model:
            out["ext_neg_answer"] = bytes(info).hex()
    ds = Dataset()
    if args.charset:
        ds.SpecificCharacterSet = args.charset.split("\\") if "\\" in args.charset else args.charset
    ds.QueryRetrieveLevel = args.level
    for kv in args.key:
        k, v = kv.split("=", 1)
        setattr(ds, k, v)
    out["pending"], out["pending_status"], out["final"], out["comment"], out["offending"] = [], [], None, None, None
    for status, ident in assoc.send_c_find(ds, model):
        s = status_of(status)
        if s in (0xFF00, 0xFF01):
            out["pending_status"].append(s)
            m = {}
            for el in ident:
                if el.VR != "SQ":
                    m[el.keyword or str(el.tag)] = str(el.value) if el.value is not None else ""
            out["pending"].append(m)
        else:
            out["final"] = s
            if status is not None:
                out["comment"] = str(status.get("ErrorComment", "")) or None
                if "OffendingElement" in status:
                    v = status.OffendingElement
                    out["offending"] = [f"{int(t):08X}" for t in (v if isinstance(v, list) else [v])]
    assoc.release()
    return out


def move(args):
    """C-MOVE to a storage SCP of our own, which records who calls it."""
    calls = []
    scp = AE(ae_title=args.dest)
    scp.network_timeout = scp.acse_timeout = scp.dimse_timeout = 30
    from pynetdicom import AllStoragePresentationContexts

    for cx in AllStoragePresentationContexts:
        scp.add_supported_context(cx.abstract_syntax, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    scp.add_supported_context(Verification)
    for uid in (SIEMENS_CSA_NON_IMAGE, GE_PRIVATE):
        scp.add_supported_context(uid, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])

    def on_requested(event):
        req = event.assoc.requestor
        name = req.implementation_version_name
        calls.append({"implementation_class_uid": str(req.implementation_class_uid), "implementation_version_name": str(name) if name else None})

    stored = []

    def on_store(event):
        stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    server = scp.start_server(("127.0.0.1", args.scp_port), block=False, evt_handlers=[(evt.EVT_REQUESTED, on_requested), (evt.EVT_C_STORE, on_store)])
    try:
        ae = ae_for(args)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc, out = associate(ae, args)
        if not assoc.is_established:
            return out
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = args.study
        final = None
        for status, _ in assoc.send_c_move(ds, args.dest, StudyRootQueryRetrieveInformationModelMove):
            s = status_of(status)
            if s is not None and s not in (0xFF00, 0xFF01):
                final = {"status": s, "comment": str(status.get("ErrorComment", "")) or None}
                for k in ("NumberOfCompletedSuboperations", "NumberOfFailedSuboperations"):
                    if k in status:
                        final[k] = int(status[k].value)
        assoc.release()
        out["final"] = final
    finally:
        server.shutdown()
    out["calls"] = calls
    out["stored"] = stored
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int)
    p.add_argument("--ae", default="PYSCU")
    p.add_argument("--bind", help="the local address to call from (another loopback address: another host)")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    s = sub.add_parser("store")
    s.add_argument("files", nargs="+")
    g = sub.add_parser("get")
    g.add_argument("--study", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("files", nargs="+")
    e = sub.add_parser("echo")
    e.add_argument("--propose", action="append", default=[])
    f = sub.add_parser("find")
    f.add_argument("--level", required=True)
    f.add_argument("--model", default="study")
    f.add_argument("--charset")
    f.add_argument("--ext")
    f.add_argument("--key", action="append", default=[])
    mv = sub.add_parser("move")
    mv.add_argument("--dest", required=True)
    mv.add_argument("--scp-port", type=int, required=True)
    mv.add_argument("--study", required=True)
    args = p.parse_args()
    out = {"make": lambda: make(args.out), "store": lambda: store(args), "get": lambda: get(args), "echo": lambda: echo(args), "find": lambda: find(args), "move": lambda: move(args)}[args.cmd]()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
