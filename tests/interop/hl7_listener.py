"""A RIS's HL7 v2 listener for radhub's tests: python-hl7's MLLP server.

Usage: hl7_listener.py PORT OUT_FILE

Each message received is parsed by python-hl7 and appended to OUT_FILE as
one JSON line (its type, control ID, PID-3, OBR-25, OBX-5 values, the raw
text), then acknowledged (MSA AA) with python-hl7's own ACK. Prints
"listening" once the port is open.
"""

import asyncio
import json
import sys

import hl7
from hl7.mllp import start_hl7_server


async def main(port, out):
    async def on_client(reader, writer):
        try:
            while not writer.is_closing():
                msg = await reader.readmessage()
                obx = [str(s[5]) for s in msg.segments("OBX")]
                record = {
                    "type": str(msg.segment("MSH")[9]),
                    "control": str(msg.segment("MSH")[10]),
                    "pid3": str(msg.segment("PID")[3]),
                    "pid5": str(msg.segment("PID")[5]),
                    "obr25": str(msg.segment("OBR")[25]),
                    "obx": obx,
                    "raw": str(msg),
                }
                with open(out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
                writer.writemessage(msg.create_ack())
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await start_hl7_server(on_client, "127.0.0.1", port, encoding="utf-8")
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
