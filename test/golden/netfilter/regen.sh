#!/usr/bin/env bash
# Regenerates the expected *.save files from the kernel: each *.rules file is
# run through iptables-legacy / ip6tables-legacy in a throwaway network
# namespace, and the iptables-save + ip6tables-save output (timestamps
# replaced by <TIME>) becomes the golden file xtr must reproduce.
# Needs root and iptables 1.8.9 (legacy). Usage: regen.sh [FILE.rules...]
set -euo pipefail
cd "$(dirname "$0")"
files=("$@")
[ ${#files[@]} -eq 0 ] && files=(*.rules)
for f in "${files[@]}"; do
  ns="xegold$$$RANDOM"
  ip netns add "$ns"
  trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
  while IFS= read -r line; do
    [[ -z "$line" || "$line" == \#* ]] && continue
    eval "set -- $line"
    tool="$1"; shift
    ip netns exec "$ns" "${tool}-legacy" "$@" || { echo "$f: kernel refused: $line" >&2; exit 1; }
  done < "$f"
  {
    ip netns exec "$ns" iptables-legacy-save
    ip netns exec "$ns" ip6tables-legacy-save
  } | sed -E 's/ on .*$/ on <TIME>/' > "${f%.rules}.save"
  ip netns del "$ns"
  trap - EXIT
  echo "wrote ${f%.rules}.save"
done
