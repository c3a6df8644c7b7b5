#!/usr/bin/env python3
"""Judges an Autobahn fuzzing-client report for herald, which is not an echo server.

The suite expects every text or binary message to be echoed back; herald answers text
with its own JSON frames and closes on binary ones, so the echo verdict (`behavior`)
says nothing here. What must hold, case by case:

- a case where the server must fail the connection (a protocol violation, invalid
  UTF-8, a frame too large) gets one of the close codes the suite expects
  (1002/1003/1007/1009...) or an OK/INFORMATIONAL close verdict;
- every other case closes OK or INFORMATIONAL, or, where only the echo was missing:
  a clean close in which herald echoed the client's own close code (the suite gives
  up waiting for the echo and closes with 1001, which it then calls "WRONG CODE"),
  or herald's documented 1003 for a binary message.

Usage: autobahn_check.py <outdir>   (exit status 1 on any violation)
"""
import json
import sys
from pathlib import Path

GOOD = {"OK", "INFORMATIONAL"}


def judge(case, entry, report):
    expected = report.get("expectedClose", {})
    remote = report.get("remoteCloseCode")
    clean = report.get("wasClean")
    if entry["behaviorClose"] in GOOD:
        return None
    if not expected.get("closedByMe", True):
        return f"should fail the connection with {expected.get('closeCode')}, sent {remote}"
    if clean and remote is not None and remote == report.get("localCloseCode"):
        return None  # echoed the client's close; only the message echo was missing
    if clean and remote == 1003:
        return None  # binary message: herald speaks JSON text frames only
    return f"close verdict {entry['behaviorClose']} (herald sent {remote}, clean={clean})"


def main(outdir):
    index = json.loads((Path(outdir) / "index.json").read_text())
    failures, count = [], 0
    for agent, cases in index.items():
        for case, entry in sorted(cases.items()):
            count += 1
            report = json.loads((Path(outdir) / entry["reportfile"]).read_text())
            why = judge(case, entry, report)
            if why:
                failures.append(f"{agent} case {case}: {why}")
    print(f"autobahn: {count} cases judged, {len(failures)} violations")
    for line in failures:
        print("  " + line)
    if count == 0:
        print("autobahn: no cases ran")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
