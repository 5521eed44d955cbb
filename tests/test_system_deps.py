"""scripts/system_deps.sh: what `make demo`/`make test` do about espeak-ng, sox and chromium."""
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "system_deps.sh"


def run_with_path(bin_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(SCRIPT)], capture_output=True, text=True,
                          env={"PATH": str(bin_dir)})


def fake_tool(bin_dir: Path, name: str, output: str = "") -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\necho {output}\n")
    path.chmod(0o755)


def test_without_tools_and_without_root_says_exactly_what_to_install(tmp_path):
    fake_tool(tmp_path, "id", "1000")  # not root
    result = run_with_path(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: missing espeak-ng sox chromium; install them with: "
                                     "sudo apt-get install espeak-ng sox chromium")


def test_with_tools_present_does_nothing(tmp_path):
    for name in ("espeak-ng", "sox", "chromium"):
        fake_tool(tmp_path, name)
    fake_tool(tmp_path, "id", "1000")
    result = run_with_path(tmp_path)
    assert result.returncode == 0 and result.stdout == result.stderr == ""


def installed_as_root(bin_dir: Path, present) -> str:
    """Run the script as root with ``present`` tools and a logging apt-get; the last apt-get command line."""
    fake_tool(bin_dir, "id", "0")
    for name in present:
        fake_tool(bin_dir, name)
    log = bin_dir / "apt.log"
    (bin_dir / "apt-get").write_text(f'#!/bin/bash\necho "$@" >> {log}\n')
    (bin_dir / "apt-get").chmod(0o755)
    result = run_with_path(bin_dir)
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()[-1]


def test_as_root_installs_the_missing_ones_with_apt_get(tmp_path):
    assert installed_as_root(tmp_path, ["espeak-ng", "chromium"]).endswith("install -y -qq sox")


def test_as_root_installs_chromium_for_the_kiosk_test(tmp_path):
    assert installed_as_root(tmp_path, ["espeak-ng", "sox"]).endswith("install -y -qq chromium")
