# Runs plain-assert test functions inside MicroPython (the unix port has no unittest).
# usage: micropython _mprun.py MODULE TEST [TEST ...]
# Prints one line per test: "@@ISOPRESS-RESULT " + JSON {test, ok, tb, alloc_bytes}.

import gc
import io
import json
import sys

_TAG = "@@ISOPRESS-RESULT "


def _main(argv):
    module = __import__(argv[1])
    for name in argv[2:]:
        gc.collect()
        try:
            getattr(module, name)()
            print(_TAG + json.dumps({"test": name, "ok": True, "tb": ""}))
        except Exception as exc:  # report every failure, keep running the others
            buf = io.StringIO()
            sys.print_exception(exc, buf)  # type: ignore[attr-defined]
            print(_TAG + json.dumps({"test": name, "ok": False, "tb": buf.getvalue()}))


_main(sys.argv)
