#!/usr/bin/env bash
# De-identification benchmark: files/s and MB/s of `casecast deid --no-ocr` (tags
# only), of de-identify + render (`--frames`) and of the whole ingest (`casecast cases
# import`: pool, render, object store, SQLite) over a corpus of CT files, next to
# dicognito (PyPI) and dcmtk's dcmodify editing a handful of tags, on the same files
# in the same run; then casecast with OCR on a smaller set of pictures with burned-in
# text. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

FILES="${FILES:-300}"
SIZE="${SIZE:-512}"   # rows = columns; 512 is a CT slice
OCR_FILES="${OCR_FILES:-20}"
BIN="${BIN:-target/release/casecast}"
OUT=target/bench
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "== corpus: $FILES CT files (pydicom, ${SIZE}x${SIZE} 16-bit, PHI in tags)"
mkdir -p "$WORK/corpus" "$WORK/ocr"
/usr/bin/python3 - "$WORK/corpus" "$FILES" "$SIZE" <<'PY'
import array, sys
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, CTImageStorage, generate_uid
out, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
study, series = generate_uid(), generate_uid()
pixels = array.array("H", [i % 4096 for i in range(size * size)]).tobytes()
for i in range(n):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID = CTImageStorage, ExplicitVRLittleEndian
    meta.MediaStorageSOPInstanceUID = sop = generate_uid()
    ds = FileDataset(f"{out}/{i:05}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = CTImageStorage, sop, study, series
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "DOE^JOHN", "PID4711X", "19610412"
    ds.AccessionNumber, ds.InstitutionName, ds.ReferringPhysicianName = "ACC99887", "St. Elsewhere", "HOUSE^GREGORY"
    ds.StudyDate, ds.StudyTime, ds.Modality, ds.StudyDescription = "20240305", "101500", "CT", "CT chest"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels
    ds.save_as(f"{out}/{i:05}.dcm", write_like_original=False)
PY
MB=$(du -sm "$WORK/corpus" | cut -f1)

# seconds of wall time for a command
timed() { python3 -c 'import subprocess,sys,time; t=time.time(); subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL); print(round(time.time()-t,2))' "$@"; }
rate() { python3 -c "print(round($1 / $2, 1))"; }

echo "== casecast deid --no-ocr"
t_casecast=$(timed "$BIN" deid --no-ocr --data-dir "$WORK/data" "$WORK/corpus" "$WORK/out-casecast")

echo "== casecast deid --no-ocr --frames (de-identify + render every frame as PNG)"
t_render=$(timed "$BIN" deid --no-ocr --frames --data-dir "$WORK/data" "$WORK/corpus" "$WORK/out-render")

echo "== casecast cases import (the whole ingest: pool, render, object store, SQLite), OCR off"
printf '[cases]\nocr = false\ncstore_listen = ""\n' > "$WORK/import.toml"
t_import=$(timed "$BIN" cases import --config "$WORK/import.toml" --data-dir "$WORK/import" "$WORK/corpus")

echo "== dicognito (PyPI, in a venv)"
if [ ! -x "$OUT/venv/bin/python" ]; then
  python3 -m venv "$OUT/venv" && "$OUT/venv/bin/pip" install -q dicognito
fi
t_dicognito=$(timed "$OUT/venv/bin/python" -m dicognito --quiet -o "$WORK/out-dicognito" "$WORK/corpus")

echo "== dcmodify (dcmtk), five tags, one process per file as usual"
cp -r "$WORK/corpus" "$WORK/out-dcmodify"
t_dcmodify=$(timed bash -c "for f in $WORK/out-dcmodify/*.dcm; do dcmodify -nb -ma PatientName=ANON -ma PatientID=ANON -ma PatientBirthDate= -ma AccessionNumber= -ma InstitutionName=ANON \"\$f\"; done")

echo "== casecast deid with OCR ($OCR_FILES pictures 320x160 with burned-in text)"
for i in $(seq 1 "$OCR_FILES"); do
  /usr/bin/python3 tests/fixtures/make_dicom.py "$WORK/ocr" >/dev/null
  mv "$WORK/ocr/DOE_JOHN_0.dcm" "$WORK/ocr/pic-$i.dcm"; rm -f "$WORK/ocr"/DOE_JOHN_*.dcm
done
t_ocr=$(timed "$BIN" deid --data-dir "$WORK/data" "$WORK/ocr" "$WORK/out-ocr")

python3 - "$FILES" "$MB" "$t_casecast" "$t_dicognito" "$t_dcmodify" "$OCR_FILES" "$t_ocr" "$t_render" "$t_import" <<'PY' | tee "$OUT/deid.json"
import json, sys
n, mb, tc, td, tm, no, to, tr, ti = int(sys.argv[1]), float(sys.argv[2]), *map(float, sys.argv[3:6]), int(sys.argv[6]), *map(float, sys.argv[7:10])
r = lambda t: {"seconds": t, "files_per_s": round(n / t, 1), "mb_per_s": round(mb / t, 2)}
print(json.dumps({"files": n, "mb": mb, "casecast_no_ocr": r(tc), "casecast_no_ocr_render": r(tr), "casecast_cases_import": r(ti),
                  "dicognito": r(td), "dcmodify_5_tags": r(tm),
                  "casecast_vs_dicognito": round(td / tc, 1), "casecast_vs_dcmodify": round(tm / tc, 2),
                  "casecast_ocr": {"files": no, "seconds": to, "s_per_frame": round(to / no, 2)}}, indent=1))
PY
