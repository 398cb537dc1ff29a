#!/usr/bin/env bash
# Installs the Debian packages the test suite talks to, only those that are missing:
# mosquitto (real MQTT broker), GStreamer's RTSP server with python3-gi (real RTSP server), ffmpeg,
# Chromium (the live view is tested in a real headless browser), and webrtcbin with libnice, x264
# and iproute2 (a GStreamer WHIP publisher in a network namespace of its own).
set -euo pipefail

# `sysdeps.sh venv`: only what `python3 -m venv` needs on Debian (ensurepip lives in python3-venv).
if [ "${1:-}" = "venv" ]; then
  pkgs=(python3-venv)
# `sysdeps.sh opencv`: the libraries opencv-python's cv2 links (libGL, GLib); Debian 13 names GLib's t64
elif [ "${1:-}" = "opencv" ]; then
  glib=libglib2.0-0
  if apt-cache show libglib2.0-0t64 >/dev/null 2>&1; then glib=libglib2.0-0t64; fi
  pkgs=(libgl1 "$glib")
else
  pkgs=(mosquitto mosquitto-clients ffmpeg python3-gi python3-gst-1.0 gir1.2-gst-rtsp-server-1.0
        gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-rtsp
        gstreamer1.0-libav gstreamer1.0-nice gstreamer1.0-plugins-ugly gir1.2-gst-plugins-bad-1.0 iproute2
        chromium)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "sysdeps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "sysdeps: need root (or sudo) to apt-get install: ${missing[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
