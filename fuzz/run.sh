#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 30) on a nightly toolchain, seeding the
# corpora from ../shared/traces when present. Installs cargo-fuzz (pinned) if it is missing.
# Exits 0 without fuzzing when no nightly toolchain is installed (stable CI).
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${1:-30}"
CARGO_FUZZ_VERSION="0.13.2"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain; skipping (install one with: rustup toolchain install nightly)"
  exit 0
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# Seed corpora with the recorded frames.
traces=""
for dir in "${PHX_TRACES_DIR:-}" ../../shared/traces ../shared/traces; do
  if [ -n "$dir" ] && [ -d "$dir" ]; then traces="$dir"; break; fi
done
if [ -n "$traces" ]; then
  mkdir -p corpus/decode_frame
  python3 - "$traces" corpus/decode_frame <<'PY'
import hashlib, pathlib, sys
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for f in src.glob("*.txt"):
    for line in f.read_text().splitlines():
        if line[:2] not in ("> ", "< "):
            continue
        body = line[2:]
        data = bytes.fromhex(body[2:]) if body.startswith("b:") else body.encode()
        (dst / hashlib.sha1(data).hexdigest()).write_bytes(data)
PY
fi

for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
  mkdir -p "corpus/$target"
  log="$(mktemp)"
  if ! cargo +nightly fuzz run "$target" "corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $target failed (crash inputs, if any, are in fuzz/artifacts/$target)"
    exit 1
  fi
  grep -E "^(Done|stat::number_of_executed_units)" "$log" || true
  rm -f "$log"
done
