#!/usr/bin/env bash
# Installs the Debian packages the built-in corpora need, or says exactly what to
# install when we are not root:
#   espeak-ng, sox                         data_prep/synth_digits.py
#   flite, asterisk prompts, gcin-voice    data_prep/recorded_voices.py (its VOICES)
#   chromium                               the kiosk-page test (tests/test_service_process.py)
# Programs are looked for on PATH, package data under $SYSTEM_DEPS_ROOT/usr/share
# (SYSTEM_DEPS_ROOT is empty, i.e. /, except in the tests).
set -euo pipefail
root="${SYSTEM_DEPS_ROOT:-}"
sounds="$root/usr/share/asterisk/sounds"
missing=()
need_command() { command -v "$1" >/dev/null 2>&1 || missing+=("$1"); }
need_file() { [ -e "$1" ] || missing+=("$2"); }
need_command espeak-ng
need_command sox
need_command flite
need_command chromium
need_file "$sounds/en_US_f_Allison/digits/0.wav" asterisk-core-sounds-en-wav
need_file "$sounds/fr_CA_f_June/digits/0.wav" asterisk-core-sounds-fr-wav
need_file "$sounds/it_IT_m_Carlo/digits/0.wav" asterisk-core-sounds-it-wav
need_file "$sounds/it_IT_f_Menardi/digits/0.wav" asterisk-prompt-it-menardi-wav
need_file "$sounds/ru_RU_f_IvrvoiceRU/digits/0.wav" asterisk-core-sounds-ru-wav
need_file "$sounds/fr/digits/0.gsm" asterisk-prompt-fr-armelle
need_file "$sounds/es/digits/0.gsm" asterisk-prompt-es-co
need_file "$root/usr/share/gcin-voice/ogg" gcin-voice
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "error: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
