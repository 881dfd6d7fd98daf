#!/usr/bin/env bash
# Installs the Debian packages casecast needs to build, run and test, if missing.
# Usage: scripts/install-deps.sh [run|test]
set -euo pipefail
mode="${1:-run}"

pkgs=(
  pkg-config clang cmake
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice gstreamer1.0-x
  fonts-dejavu-core tesseract-ocr tesseract-ocr-eng dcmtk
)
if [ "$mode" = test ]; then
  # dpkg-dev (dpkg-shlibdeps) and systemd (systemd-analyze): the deployment test.
  # orthanc and orthanc-dicomweb: a PACS beside casecast (the `pacs` tests).
  # prometheus (and its promtool): the alert rules and the dashboard's queries.
  pkgs+=(chromium chromium-driver ffmpeg procps python3-pydicom dicom3tools postgresql redis-server openssl coturn nftables iproute2 dpkg-dev systemd orthanc orthanc-dicomweb prometheus)
fi

# Test peers from PyPI, in a virtual environment of the project's own: moto's
# stand-in AWS endpoint (S3 for the cases' object store) and dicomweb-client (an
# independent DICOMweb client for QIDO-RS and WADO-RS), openapi-spec-validator and
# schemathesis (which fuzzes the operators' API from its OpenAPI document; its
# hypothesis pinned to one its schema generator works with), and pydicom-data
# (pydicom's set of real sample files, the de-identification tests' real files),
# and m3u8 (an HLS parser that reads the low-latency tags, to check the playlists).
python_peers() {
  local venv=target/test-venv
  if ! "$venv/bin/python" -c 'import moto, dicomweb_client, openapi_spec_validator, schemathesis, data_store, m3u8' 2>/dev/null; then
    echo "installing moto[server] and dicomweb-client into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'moto[server]==5.2.5' 'dicomweb-client==0.59.3' 'openapi-spec-validator==0.7.2' \
      'schemathesis==4.1.4' 'hypothesis==6.115.0' 'pydicom-data==1.0.0' \
      'm3u8==6.0.0'
  fi
}

# cargo-deb builds the Debian package; the deployment test makes one from the debug
# binary (tests/tests/e2e/deploy.rs). Pinned: the test uses its flags. About 1 minute
# to compile on 2 cores.
cargo_deb() {
  if ! cargo deb --version 2>/dev/null | grep -q '^cargo-deb 3\.8\.0'; then
    echo "installing cargo-deb 3.8.0 (cargo install, about a minute)"
    cargo install cargo-deb --locked --version 3.8.0
  fi
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  [ "$mode" = test ] && python_peers && cargo_deb
  exit 0
fi
echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
[ "$mode" = test ] && python_peers && cargo_deb
exit 0
