"""Read a subunit (v1 or v2) stream; print one JSON object per test (runs in the tempest venv).

    <tempest venv>/bin/python tools/subunit_results.py STREAM

Each line: {"id", "status", "reason", "traceback", "log"} (log: the
test's captured logging, i.e. tempest's request trace); status is testtools' own
(success, skip, fail, xfail, uxsuccess, exists, inprogress).
"""

import json
import sys

import subunit
import testtools


def main(path: str) -> None:
    tests = []
    result = testtools.StreamToDict(tests.append)
    with open(path, "rb") as stream:
        if stream.read(1) == b"\xb3":   # subunit v2 signature byte
            stream.seek(0)
            case = subunit.ByteStreamToStreamResult(stream, non_subunit_name="stdout")
        else:                           # v1, as in stestr's repository
            stream.seek(0)
            case = subunit.ProtocolTestCase(stream)
            result = testtools.ExtendedToStreamDecorator(result)
        result.startTestRun()
        try:
            case.run(result)
        finally:
            result.stopTestRun()
    for test in tests:
        details = test["details"]

        def text(key):
            content = details.get(key)
            return content.as_text() if content is not None else ""

        logs = "".join(text(k) for k in details if k.startswith("pythonlogging"))
        print(json.dumps({"id": test["id"], "status": test["status"],
                          "reason": text("reason"), "traceback": text("traceback"),
                          "log": logs}))


if __name__ == "__main__":
    main(sys.argv[1])
