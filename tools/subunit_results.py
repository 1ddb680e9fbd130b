"""Read a subunit v2 stream; print one JSON object per test (runs in the tempest venv).

    <tempest venv>/bin/python tools/subunit_results.py STREAM

Each line: {"id", "status", "reason", "traceback"}; status is testtools' own
(success, skip, fail, xfail, uxsuccess, exists, inprogress).
"""

import json
import sys

import subunit
import testtools


def main(path: str) -> None:
    tests = []
    with open(path, "rb") as stream:
        case = subunit.ByteStreamToStreamResult(stream, non_subunit_name="stdout")
        result = testtools.StreamToDict(tests.append)
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

        print(json.dumps({"id": test["id"], "status": test["status"],
                          "reason": text("reason"), "traceback": text("traceback")}))


if __name__ == "__main__":
    main(sys.argv[1])
