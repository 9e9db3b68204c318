"""A RIS sending HL7 v2 messages for radhub's tests: python-hl7's MLLP client.

Usage: hl7_send.py PORT MESSAGES.json   (a JSON list of messages, segments
joined by \\r). Sends them in order on one connection and prints a JSON
list of each ACK's [MSA-1, MSA-2, MSA-3].
"""

import asyncio
import json
import sys

import hl7
from hl7.mllp import open_hl7_connection


async def main(port, path):
    messages = json.load(open(path, encoding="utf-8"))
    reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    acks = []
    for m in messages:
        writer.writemessage(hl7.parse(m))
        await writer.drain()
        ack = await asyncio.wait_for(reader.readmessage(), 10)
        msa = ack.segment("MSA")
        acks.append([str(msa[1]), str(msa[2]), str(msa[3]) if len(msa) > 3 else ""])
    writer.close()
    print(json.dumps(acks))


asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
