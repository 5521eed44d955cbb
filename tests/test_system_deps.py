"""scripts/system_deps.sh: what `make demo`/`make test` do about the Debian packages of the built-in corpora and the
chromium of the kiosk-page test."""
import re
import subprocess
from pathlib import Path

from data_prep.recorded_voices import VOICES

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "system_deps.sh"
COMMANDS = ["espeak-ng", "sox", "flite", "chromium"]
DATA_PACKAGES = ["asterisk-core-sounds-en-wav", "asterisk-core-sounds-fr-wav", "asterisk-core-sounds-it-wav",
                 "asterisk-prompt-it-menardi-wav", "asterisk-core-sounds-ru-wav", "asterisk-prompt-fr-armelle",
                 "asterisk-prompt-es-co", "gcin-voice"]


def run_with_path(bin_dir: Path, data_root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(SCRIPT)], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "SYSTEM_DEPS_ROOT": str(data_root)})


def fake_tool(bin_dir: Path, name: str, output: str = "") -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\necho {output}\n")
    path.chmod(0o755)


def checked_files() -> dict:
    """``{package: path}`` of the script's data checks, with SYSTEM_DEPS_ROOT empty."""
    text = SCRIPT.read_text().replace("$sounds", "/usr/share/asterisk/sounds").replace("$root", "")
    return {pkg: path for path, pkg in re.findall(r'^need_file "([^"]+)" (\S+)$', text, re.M)}


def install_fake_data(data_root: Path) -> None:
    for path in checked_files().values():
        target = data_root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"")


def test_without_anything_and_without_root_says_exactly_what_to_install(tmp_path):
    bin_dir, data_root = tmp_path / "bin", tmp_path / "root"
    bin_dir.mkdir()
    fake_tool(bin_dir, "id", "1000")  # not root
    result = run_with_path(bin_dir, data_root)
    assert result.returncode == 1
    wanted = " ".join(COMMANDS + DATA_PACKAGES)
    assert result.stderr.strip() == f"error: missing {wanted}; install them with: sudo apt-get install {wanted}"


def test_with_everything_present_does_nothing(tmp_path):
    bin_dir, data_root = tmp_path / "bin", tmp_path / "root"
    bin_dir.mkdir()
    for name in COMMANDS:
        fake_tool(bin_dir, name)
    fake_tool(bin_dir, "id", "1000")
    install_fake_data(data_root)
    result = run_with_path(bin_dir, data_root)
    assert result.returncode == 0 and result.stdout == result.stderr == ""


def test_as_root_installs_the_missing_ones_with_apt_get(tmp_path):
    bin_dir, data_root = tmp_path / "bin", tmp_path / "root"
    bin_dir.mkdir()
    fake_tool(bin_dir, "id", "0")
    fake_tool(bin_dir, "espeak-ng")
    fake_tool(bin_dir, "flite")
    fake_tool(bin_dir, "chromium")
    install_fake_data(data_root)
    (data_root / checked_files()["gcin-voice"].lstrip("/")).unlink()
    log = tmp_path / "apt.log"
    (bin_dir / "apt-get").write_text(f'#!/bin/bash\necho "$@" >> {log}\n')
    (bin_dir / "apt-get").chmod(0o755)
    result = run_with_path(bin_dir, data_root)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines()[-1].endswith("install -y -qq --no-install-recommends sox gcin-voice")


def test_every_recorded_voice_package_is_checked_at_a_file_that_voice_reads():
    files = checked_files()
    assert set(files) | {"flite"} == {voice.package for voice in VOICES}
    for voice in VOICES:
        if voice.kind == "recorded":
            digit_zero = "/usr/share/" + voice.digit_files[0]
            assert digit_zero == files[voice.package] or digit_zero.startswith(files[voice.package] + "/")
