#!/usr/bin/env bash
# Make the Ray auth token that cluster.yaml ships to every node (RAY_AUTH_MODE=token).
#
#   scripts/make_ray_token.sh           # create ~/.ray/auth_token if missing (mode 600)
#   scripts/make_ray_token.sh --rotate  # replace it (then `ray up cluster.yaml` again)
#
# The token stays outside the repository, readable by its owner only; it is never
# printed. Ray's CLI and `ray job submit` read it from this default path when
# RAY_AUTH_MODE=token is set.
set -euo pipefail

token_path="$HOME/.ray/auth_token"      # cluster.yaml's file_mounts expects this path
rotate=0
case "${1:-}" in
  "") ;;
  --rotate) rotate=1 ;;
  *) echo "usage: $0 [--rotate]" >&2; exit 2 ;;
esac

umask 077
mkdir -p "$(dirname "$token_path")"
chmod 700 "$(dirname "$token_path")"

if [[ -s "$token_path" && $rotate -eq 0 ]]; then
  echo "keeping the existing token $token_path"
else
  tmp="$(mktemp "$token_path.XXXXXX")"
  # 256 random bits as 64 hex characters, like `ray get-auth-token --generate`.
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex 32 | tr -d '\n' > "$tmp"
  else
    "${PYTHON:-python3}" -c 'import secrets, sys; sys.stdout.write(secrets.token_hex(32))' > "$tmp"
  fi
  mv -f "$tmp" "$token_path"
  echo "wrote a new token to $token_path"
fi
chmod 600 "$token_path"
