"""pynetdicom as radhub's peer, for tests/interop_pynetdicom.rs.

Each subcommand opens one association to radhub with pynetdicom's AE API,
runs one service and prints one JSON object on stdout for the Rust test to
assert on. Statuses are printed as integers, exactly as received.

    pynetdicom_scu.py describe FILE_OR_DIR...      (pydicom only, no network)
    pynetdicom_scu.py --port P echo
    pynetdicom_scu.py --port P store FILE_OR_DIR...
    pynetdicom_scu.py --port P find --level STUDY --key PatientName=X* --key PatientID= ...
    pynetdicom_scu.py --port P get --level STUDY --key StudyInstanceUID=U
    pynetdicom_scu.py --port P move --scp-port Q --dest PYSCP --level STUDY --key StudyInstanceUID=U
    pynetdicom_scu.py --port P cancel-find --level IMAGE --key StudyInstanceUID=U
    pynetdicom_scu.py --port P commit --ref CLASS=UID ...
"""

import argparse
import json
import os
import socket
import sys
import threading
import time
import warnings

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, _config, build_role, evt, transport
from pynetdicom import association as pynetdicom_association
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
    _STORAGE_CLASSES,
)

warnings.simplefilter("ignore")
STORAGE = set(_STORAGE_CLASSES.values())
# Files are sent as they are on disk (not re-encoded by pydicom), so that
# radhub sees each file's own bytes in its own transfer syntax.
_config.STORE_SEND_CHUNKED_DATASET = True

# pynetdicom leaves Nagle on: a C-STORE's data PDU then waits for the ACK
# of its command PDU, ~40 ms per message (DCMTK needs TCP_NODELAY=1 alike).
_create_socket = transport.AssociationSocket._create_socket


def _create_socket_nodelay(self, address):
    sock = _create_socket(self, address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


transport.AssociationSocket._create_socket = _create_socket_nodelay


def status_of(rsp):
    """The Status of a response, or None where none came (abort, timeout)."""
    return int(rsp.Status) if rsp is not None and "Status" in rsp else None


def identifier_json(ds):
    """An identifier as {keyword: string}, for the keys the tests compare."""
    if ds is None:
        return None
    out = {}
    for elem in ds:
        if elem.keyword and elem.VR != "SQ":
            v = elem.value
            out[elem.keyword] = "\\".join(str(x) for x in v) if isinstance(v, (list, pydicom.multival.MultiValue)) else ("" if v is None else str(v))
    return out


def query(args):
    ds = Dataset()
    ds.QueryRetrieveLevel = args.level
    for kv in args.key:
        k, _, v = kv.partition("=")
        setattr(ds, k, v)
    return ds


def associate(ae, args):
    assoc = ae.associate("127.0.0.1", args.port, ae_title=args.called)
    if not assoc.is_established:
        print(json.dumps({"established": False, "rejected": assoc.is_rejected, "aborted": assoc.is_aborted}))
        sys.exit(0)
    return assoc


def _quiesced(send):
    """pynetdicom 3.0.4's requestor reactor can take a response off the DIMSE
    queue before send_*() gets it (pydicom/pynetdicom#875): send_*() pauses the
    reactor by clearing its checkpoint and waiting for `_is_paused`, which the
    reactor sets just before it waits, so a stale True lets the reactor run
    one more loop. A fast peer's response then arrives inside that loop and is
    dropped as "unexpected". Pausing first, and waiting until the reactor is
    blocked at its checkpoint, closes the window; send_*() sets it after."""
    def wrapper(self, *a, **kw):
        self._reactor_checkpoint.clear()
        # Wait until the reactor is blocked on the checkpoint (a waiter on
        # the Event's condition), not for a guessed time: under load a fixed
        # sleep lets it run its loop after the send.
        deadline = time.monotonic() + 2
        while not self._reactor_checkpoint._cond._waiters and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.0005)
        return send(self, *a, **kw)
    return wrapper


for _name in ("send_c_echo", "send_c_store", "send_c_find", "send_c_get", "send_c_move", "send_n_action"):
    setattr(pynetdicom_association.Association, _name, _quiesced(getattr(pynetdicom_association.Association, _name)))


def new_ae(args):
    ae = AE(ae_title=args.ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    return ae


def cmd_echo(args):
    ae = new_ae(args)
    ae.add_requested_context(Verification)
    assoc = associate(ae, args)
    rsp = assoc.send_c_echo()
    assoc.release()
    print(json.dumps({"established": True, "status": status_of(rsp)}))


def storable(path):
    """((SOP class, SOP instance, transfer syntax, has a study), None) for a
    storage instance pydicom reads, else (None, why it is not sent)."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as e:  # pydicom cannot read it: not sent
        return None, f"unreadable: {type(e).__name__}"
    fm = getattr(ds, "file_meta", None)
    ts = fm.get("TransferSyntaxUID") if fm is not None else None
    sop_class, sop = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
    if ts is None:
        return None, "no transfer syntax"
    if sop_class is None or sop is None:
        return None, "no SOP Class/Instance UID in the data set"
    if str(sop_class) not in STORAGE:
        return None, f"not a storage SOP class: {sop_class}"
    return (str(sop_class), str(sop), str(ts), ds.get("StudyInstanceUID") is not None), None


def expand(paths):
    """Files as given, and the .dcm files under folders, sorted."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                files += [os.path.join(root, n) for n in names if n.endswith(".dcm")]
        else:
            files.append(p)
    return sorted(files)


def cmd_describe(args):
    """pydicom's own reading of files: the oracle the tests compare with."""
    out = []
    for f in expand(args.paths):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        out.append({k: str(ds.get(kw, "")) for k, kw in (("sop", "SOPInstanceUID"), ("sop_class", "SOPClassUID"), ("study", "StudyInstanceUID"), ("patient_id", "PatientID"), ("patient_name", "PatientName"))} | {"file": f})
    print(json.dumps(out))


def cmd_store(args):
    files = expand(args.paths)
    sendable, skipped = [], []
    for f in files:
        info, why = storable(f)
        if info is None:
            skipped.append({"file": os.path.basename(f), "why": why})
        else:
            sendable.append((f, info))

    # One presentation context per (SOP class, transfer syntax): each file is
    # proposed in its own encoding, so radhub must accept what it is sent.
    ae = new_ae(args)
    pairs = sorted({(c, ts) for _, (c, _, ts, _) in sendable})
    if len(pairs) > 128:
        sys.exit(f"{len(pairs)} presentation contexts needed, 128 allowed")
    for c, ts in pairs:
        ae.add_requested_context(c, [ts])

    # The C-STORE-RQ must name the data set's own SOP Class and Instance
    # (PS3.7 9.1.1); several pydicom files carry a stale Media Storage SOP
    # Instance UID in their meta, which pynetdicom would use when sending
    # the file as is. The bytes sent stay the file's own.
    uids = {}
    split = pynetdicom_association.split_dataset

    def split_with_own_uids(fpath):
        meta, offset = split(fpath)
        c, sop = uids[os.fspath(fpath)]
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = c, sop
        return meta, offset

    pynetdicom_association.split_dataset = split_with_own_uids

    assoc = associate(ae, args)
    accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
    results = []
    for f, (c, sop, ts, has_study) in sendable:
        r = {"file": os.path.basename(f), "sop_class": c, "sop": sop, "ts": ts, "has_study": has_study, "status": None}
        if (c, ts) not in accepted:
            r["error"] = "presentation context not accepted"
        elif not assoc.is_established:
            r["error"] = "association gone"
        else:
            uids[os.fspath(f)] = (c, sop)
            rsp = assoc.send_c_store(f)
            r["status"] = status_of(rsp)
            if rsp is not None and "ErrorComment" in rsp:
                r["comment"] = str(rsp.ErrorComment)
        results.append(r)
    still_up = assoc.is_established
    if still_up:
        assoc.release()
    print(json.dumps({"established": True, "proposed": len(pairs), "accepted": len(accepted), "alive_at_end": still_up, "results": results, "skipped": skipped}))


def cmd_find(args):
    ae = new_ae(args)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = associate(ae, args)
    pending, final = [], None
    for status, ident in assoc.send_c_find(query(args), StudyRootQueryRetrieveInformationModelFind):
        s = status_of(status)
        if s in (0xFF00, 0xFF01):
            pending.append(identifier_json(ident))
        else:
            final = s
    assoc.release()
    print(json.dumps({"established": True, "pending": pending, "final": final}))


def cmd_cancel_find(args):
    """C-CANCEL sent as soon as the first pending response arrives."""
    ae = new_ae(args)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(Verification)
    assoc = associate(ae, args)
    pending, final, cancelled = 0, None, False
    for status, _ in assoc.send_c_find(query(args), StudyRootQueryRetrieveInformationModelFind, msg_id=7):
        s = status_of(status)
        if s in (0xFF00, 0xFF01):
            pending += 1
            if not cancelled:
                assoc.send_c_cancel(7, query_model=StudyRootQueryRetrieveInformationModelFind)
                cancelled = True
        else:
            final = s
    # The association must still work after a cancelled operation.
    after = status_of(assoc.send_c_echo()) if assoc.is_established else None
    assoc.release()
    print(json.dumps({"established": True, "pending": pending, "final": final, "echo_after": after}))


def received_json(event, out):
    """C-STORE handler: keeps what the test compares; answers Success."""
    ds = event.dataset
    ds.file_meta = event.file_meta
    out.append(
        {
            "sop": str(ds.SOPInstanceUID),
            "sop_class": str(ds.SOPClassUID),
            "study": str(ds.get("StudyInstanceUID", "")),
            "ts": str(event.context.transfer_syntax),
            "pixel_data_hex": bytes(ds.PixelData).hex() if "PixelData" in ds else None,
            "move_originator": str(event.request.MoveOriginatorApplicationEntityTitle or "").strip() or None,
        }
    )
    return 0x0000


SUBOPERATION_COUNTS = ("NumberOfRemainingSuboperations", "NumberOfCompletedSuboperations", "NumberOfFailedSuboperations", "NumberOfWarningSuboperations")


def retrieve_responses(responses):
    pending, final = [], None
    for status, ident in responses:
        s = status_of(status)
        counts = {k: int(status.get(k)) if status.get(k) is not None else None for k in SUBOPERATION_COUNTS}
        entry = {"status": s, **counts}
        if s == 0xFF00:
            pending.append(entry)
        else:
            final = entry
            final["failed_uids"] = identifier_json(ident).get("FailedSOPInstanceUIDList") if ident is not None else None
    return pending, final


def cmd_get(args):
    ae = new_ae(args)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    # C-GET returns instances on this association: propose storage with the
    # SCP role for the classes expected, in the transfer syntaxes offered.
    roles = []
    for c in args.storage_class:
        ae.add_requested_context(c, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        roles.append(build_role(c, scp_role=True))
    received = []
    assoc = ae.associate("127.0.0.1", args.port, ae_title=args.called, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, received_json, [received])])
    if not assoc.is_established:
        print(json.dumps({"established": False}))
        return
    pending, final = retrieve_responses(assoc.send_c_get(query(args), StudyRootQueryRetrieveInformationModelGet))
    assoc.release()
    print(json.dumps({"established": True, "pending": pending, "final": final, "received": received}))


def cmd_move(args):
    received = []
    done = threading.Event()

    # The move destination: a storage SCP of this process on its own port.
    scp = AE(ae_title=args.dest)
    scp.network_timeout = 20
    for c in sorted(STORAGE):
        scp.add_supported_context(c, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    server = scp.start_server(("127.0.0.1", args.scp_port), block=False, evt_handlers=[(evt.EVT_C_STORE, received_json, [received]), (evt.EVT_RELEASED, lambda e: done.set())])
    try:
        ae = new_ae(args)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = associate(ae, args)
        pending, final = retrieve_responses(assoc.send_c_move(query(args), args.dest, StudyRootQueryRetrieveInformationModelMove))
        assoc.release()
        if received:
            # radhub releases its association to us around its final response:
            # let that release finish before shutting down aborts it.
            done.wait(5)
    finally:
        server.shutdown()
    print(json.dumps({"established": True, "pending": pending, "final": final, "received": received}))


def report_of(event):
    """A storage commitment N-EVENT-REPORT as the test reads it."""
    info = event.event_information
    return {
        "event_type": int(event.request.EventTypeID),
        "transaction": str(info.TransactionUID),
        "committed": [str(i.ReferencedSOPInstanceUID) for i in info.get("ReferencedSOPSequence", [])],
        "failed": [[str(i.ReferencedSOPInstanceUID), int(i.FailureReason)] for i in info.get("FailedSOPSequence", [])],
        "calling_ae": event.assoc.requestor.ae_title,
    }


def cmd_commit(args):
    """Storage commitment: N-ACTION, then wait for the N-EVENT-REPORT that
    radhub sends on the same association."""
    from pynetdicom.sop_class import StorageCommitmentPushModel

    reports = []
    done = threading.Event()

    def on_report(event):
        reports.append(report_of(event))
        done.set()
        return 0x0000

    ae = new_ae(args)
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", args.port, ae_title=args.called, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    if not assoc.is_established:
        print(json.dumps({"established": False}))
        return
    ds = commitment_request(args.ref)
    status, _ = assoc.send_n_action(ds, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
    done.wait(10)
    assoc.release()
    print(json.dumps({"established": True, "status": status_of(status), "transaction": str(ds.TransactionUID), "reports": reports}))


def commitment_request(refs):
    ds = Dataset()
    ds.TransactionUID = pydicom.uid.generate_uid()
    ds.ReferencedSOPSequence = []
    for r in refs:
        cls, uid = r.split("=", 1)
        item = Dataset()
        item.ReferencedSOPClassUID = cls
        item.ReferencedSOPInstanceUID = uid
        ds.ReferencedSOPSequence.append(item)
    return ds


def cmd_commit_release(args):
    """A modality's storage commitment: N-ACTION, release at once, then take
    the N-EVENT-REPORT as it arrives on a new association from radhub (which
    takes the SCP role: role selection), listening on --listen."""
    from pynetdicom.sop_class import StorageCommitmentPushModel

    reports = []
    done = threading.Event()
    ds = commitment_request(args.ref)

    def on_report(event):
        reports.append(report_of(event))
        if reports[-1]["transaction"] == str(ds.TransactionUID):
            done.set()
        return 0x0000

    def listen():
        scp = new_ae(args)
        # radhub asks for the SCP role of the push model: accept it (and not the SCU role).
        scp.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        return scp.start_server(("127.0.0.1", args.listen), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])

    server = listen() if args.listen_after == 0 else None
    ae = new_ae(args)
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", args.port, ae_title=args.called)
    if not assoc.is_established:
        print(json.dumps({"established": False}))
        return
    status, _ = assoc.send_n_action(ds, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
    assoc.release()
    if server is None:
        # Not listening yet: radhub must keep the report and try again.
        time.sleep(args.listen_after)
        server = listen()
    done.wait(args.wait)
    # Its N-EVENT-REPORT-RSP goes out after the handler returns.
    time.sleep(0.5)
    server.shutdown()
    mine = [r for r in reports if r["transaction"] == str(ds.TransactionUID)]
    print(json.dumps({"established": True, "status": status_of(status), "transaction": str(ds.TransactionUID), "reports": mine, "others": len(reports) - len(mine)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int)
    p.add_argument("--ae", default="PYSCU")
    p.add_argument("--called", default="RADHUB")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("echo")
    d = sub.add_parser("describe")
    d.add_argument("paths", nargs="+")
    s = sub.add_parser("store")
    s.add_argument("paths", nargs="+")
    c = sub.add_parser("commit")
    c.add_argument("--ref", action="append", default=[])
    c = sub.add_parser("commit-release")
    c.add_argument("--ref", action="append", default=[])
    c.add_argument("--listen", type=int, required=True)
    c.add_argument("--listen-after", type=float, default=0, help="seconds before the SCP starts listening")
    c.add_argument("--wait", type=float, default=30)
    for name in ("find", "get", "move", "cancel-find"):
        q = sub.add_parser(name)
        q.add_argument("--level", required=True)
        q.add_argument("--key", action="append", default=[])
        if name == "get":
            q.add_argument("--storage-class", action="append", default=[])
        if name == "move":
            q.add_argument("--dest", default="PYSCP")
            q.add_argument("--scp-port", type=int, required=True)
    args = p.parse_args()
    {"describe": cmd_describe, "echo": cmd_echo, "store": cmd_store, "find": cmd_find, "get": cmd_get, "move": cmd_move, "cancel-find": cmd_cancel_find, "commit": cmd_commit, "commit-release": cmd_commit_release}[args.cmd](args)


if __name__ == "__main__":
    main()
