#!/usr/bin/env bash
# Vendors hls.js from the npm registry into web/vendor/ (the viewer page needs no
# build step and no CDN). Usage: scripts/update-hlsjs.sh [version]   (default: latest)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-latest}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "hls.js@$version" >/dev/null && tar xzf hls.js-*.tgz)
cp "$tmp/package/dist/hls.light.min.js" web/vendor/hls.light.min.js
cp "$tmp/package/LICENSE" web/vendor/hls.js.LICENSE
node -e 'console.log(require(process.argv[1]).version)' "$tmp/package/package.json" > web/vendor/hls.js.VERSION
echo "hls.js $(cat web/vendor/hls.js.VERSION) vendored into web/vendor/"
