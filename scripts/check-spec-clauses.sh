#!/usr/bin/env bash
# Every spec clause that the code, tests, scenarios or README cite (`// Spec: S-2, R-1`,
# `"clauses": ["S-5"]` …) must have an entry in docs/spec.md. Exits 1 and lists the
# missing IDs, with where they are cited, otherwise.
#
# An entry is a line of docs/spec.md that starts with the ID in bold: `**S-2** …`.
# Only the families the spec defines (the letters of its entries) count as clause IDs,
# so strings such as UTF-8, SHA-1 or FNV-1a are never taken for citations.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

spec=docs/spec.md
if [ ! -f "$spec" ]; then
  echo "$spec is missing" >&2
  exit 1
fi

entries=$(grep -oE '^\*\*[A-Z]-[0-9]+\*\*' "$spec" | tr -d '*' || true)
if [ -z "$entries" ]; then
  echo "$spec has no clause entries (lines starting with **X-N**)" >&2
  exit 1
fi
duplicates=$(printf '%s\n' "$entries" | sort | uniq -d)
if [ -n "$duplicates" ]; then
  echo "clauses with more than one entry in $spec:" >&2
  printf '  %s\n' $duplicates >&2
  exit 1
fi
defined=$(printf '%s\n' "$entries" | sort -u)

families=$(printf '%s\n' "$defined" | cut -d- -f1 | sort -u | tr -d '\n')
pattern="\\b[$families]-[0-9]+\\b"

# Where citations live: the crates' sources, tests, scenarios and docs, and the README.
dirs=()
for dir in src sim conformance examples benches fuzz; do
  [ -d "$dir" ] && dirs+=("$dir")
done
# grep, where "no match" (status 1) is not an error.
grep_some() { grep "$@" || [ "$?" -eq 1 ]; }
# search FLAGS PATTERN: grep -E with FLAGS for PATTERN wherever citations live.
search() {
  grep_some -rE $1 --exclude-dir=target \
    --include='*.rs' --include='*.json' --include='*.py' --include='*.md' \
    -e "$2" "${dirs[@]}"
  grep_some -E $1 -e "$2" README.md
}

cited=$(search -ho "$pattern" | sort -u)
missing=$(comm -23 <(printf '%s\n' "$cited") <(printf '%s\n' "$defined") | sed '/^$/d')

if [ -n "$missing" ]; then
  echo "clause IDs cited but not in $spec:" >&2
  for id in $(printf '%s\n' "$missing" | sort -t- -k1,1 -k2,2n); do
    echo "  $id, cited at:" >&2
    search -Hn "\\b$id\\b" | cut -d: -f1,2 | sed 's/^/    /' >&2
  done
  exit 1
fi

count=$(printf '%s\n' "$cited" | sed '/^$/d' | wc -l | tr -d ' ')
echo "$count cited clause IDs, each with an entry in $spec ($(printf '%s\n' "$defined" | wc -l | tr -d ' ') clauses)"
