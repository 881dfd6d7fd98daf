#!/usr/bin/env bash
# De-identification of real files, beside dicognito: pydicom-data's 68 sample files
# and pydicom's own test files (136 in all), each through `casecast deid --frames`
# (release build, OCR on) and through dicognito 0.19 (PyPI), one process per file,
# then each output checked by tests/fixtures/deid_check.py: identifying values left
# in the header, read by OCR in the pictures, new dciodvfy errors. Prints both
# summaries (files/s, peak RSS, what each leaves readable). See docs/benchmarks.md.
# Needs `scripts/install-deps.sh test` (pydicom-data, dicom3tools, dcmtk, tesseract).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${BIN:-target/release/casecast}"
OUT=target/bench
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ ! -x "$OUT/venv/bin/python" ] || ! "$OUT/venv/bin/python" -c 'import dicognito' 2>/dev/null; then
  python3 -m venv "$OUT/venv" && "$OUT/venv/bin/pip" install -q dicognito
fi
data=$(target/test-venv/bin/python -c "import data_store, os; print(os.path.join(os.path.dirname(data_store.__file__), 'data'))")
mkdir -p "$WORK/in"
for f in "$data"/*.dcm /usr/lib/python3/dist-packages/pydicom/data/test_files/*.dcm; do
  ln -s "$f" "$WORK/in/"
done
echo "== $(ls "$WORK/in" | wc -l) files"

for tool in "casecast:$(realpath "$BIN")" "dicognito:$OUT/venv/bin/python"; do
  name=${tool%%:*}
  /usr/bin/python3 tests/fixtures/deid_check.py "$tool" "$WORK/in" "$WORK/$name" --ocr --dciodvfy \
    2>/dev/null > "$OUT/deid-real-$name.jsonl"
  echo "== $name: $(tail -1 "$OUT/deid-real-$name.jsonl")"
done
