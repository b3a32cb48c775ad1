"""``infomoe export`` rejects bad arguments before importing torch or transformers (issue 17).

Importing them takes ~8 s on the 2-core development machine; an argument
mistake must be reported without that wait.  Each case runs in a fresh
interpreter, which reports the exit status and whether either library was
imported.
"""

import json
import subprocess
import sys

import pytest

_PROBE = """
import json, sys
from infomoe.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "torch": "torch" in sys.modules,
                  "transformers": "transformers" in sys.modules}))
"""


@pytest.mark.parametrize("argv, message", [
    (["--tiny", "mixtral", "--out", "{tmp}/log", "--tokens", "0"], "--tokens"),
    (["--tiny", "mixtral", "--out", "{tmp}/log", "--seq-len", "-3"], "--seq-len"),
    (["--tiny", "mixtral", "--out", "{tmp}/log", "--flush-tokens", "0"], "--flush-tokens"),
    (["--out", "{tmp}/log"], "MODEL"),
    (["some/model", "--tiny", "mixtral", "--out", "{tmp}/log"], "not both"),
    (["./no-such-dir", "--out", "{tmp}/log"], "local path"),
    (["--tiny", "mixtral", "--out", "/proc/no/such/log"], "--out"),
])
def test_argument_errors_come_before_heavy_imports(tmp_path, argv, message):
    argv = ["export"] + [a.replace("{tmp}", str(tmp_path)) for a in argv]
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"rc": 2, "torch": False, "transformers": False}
    assert proc.stderr.startswith("infomoe export: error:") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
