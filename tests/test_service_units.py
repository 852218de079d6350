"""The service units start the real entry point the way the daemon expects."""

from __future__ import annotations

import configparser
import plistlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_systemd_unit():
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "systemd" / "codexd.service")
    service = unit["Service"]
    assert service["Type"] == "notify"  # codexd sends READY=1 itself
    assert service["ExecStart"].split()[-2:] == ["codexd", "run"] or \
        service["ExecStart"].endswith("/codexd run")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # SIGHUP reloads the config
    assert int(service["WatchdogSec"]) > 0
    assert service["KillMode"] == "mixed"
    assert unit["Install"]["WantedBy"] == "default.target"


def test_launchd_plist():
    with open(ROOT / "launchd" / "dev.codexd.codexd.plist", "rb") as f:
        plist = plistlib.load(f)
    assert plist["Label"] == "dev.codexd.codexd"
    assert plist["ProgramArguments"][0].endswith("/codexd")
    assert plist["ProgramArguments"][1] == "run"
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
