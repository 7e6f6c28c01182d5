#!/usr/bin/env bash
# Runs ON the EC2 host (fed to `ssh HOST bash -s`): switch the serving container to IMAGE,
# wait for GET /ping, and go back to the previous image when the new one does not answer.
#
# Expects (set by the lines the workflow prepends): IMAGE, COMPOSE_DIR, GHCR_USER, GHCR_PAT;
# optional PORT (8080), PING_TRIES (30), PING_INTERVAL (2 seconds).
# The compose file reads the image from .env: `image: ${MLSHIP_IMAGE}`.
# The body is one function, parsed whole before it runs, so nothing it runs can read the rest
# of the script from standard input.
set -euo pipefail
main() {
  : "${IMAGE:?}" "${COMPOSE_DIR:?}" "${GHCR_USER:?}" "${GHCR_PAT:?}"
  PORT="${PORT:-8080}"
  PING_TRIES="${PING_TRIES:-30}"
  PING_INTERVAL="${PING_INTERVAL:-2}"

  cd "$COMPOSE_DIR"
  touch .env
  previous="$(sed -n 's/^MLSHIP_IMAGE=//p' .env | tail -n 1)"

  set_image() {
    local rest
    rest="$(grep -v '^MLSHIP_IMAGE=' .env || true)"
    { [ -n "$rest" ] && printf '%s\n' "$rest"; printf 'MLSHIP_IMAGE=%s\n' "$1"; } > .env.next
    mv .env.next .env
  }

  healthy() {
    local try
    for try in $(seq 1 "$PING_TRIES"); do
      if curl --silent --fail --max-time 5 "http://127.0.0.1:${PORT}/ping" > /dev/null; then
        return 0
      fi
      sleep "$PING_INTERVAL"
    done
    return 1
  }

  logout() { docker logout ghcr.io > /dev/null 2>&1 || true; }
  trap logout EXIT

  printf '%s' "$GHCR_PAT" | docker login ghcr.io --username "$GHCR_USER" --password-stdin > /dev/null
  echo "deploying $IMAGE (previous: ${previous:-none})"
  set_image "$IMAGE"
  if docker compose pull && docker compose up -d && healthy; then
    echo "deployed $IMAGE: /ping answers"
    exit 0
  fi

  echo "::error::$IMAGE did not become healthy on /ping; rolling back to ${previous:-nothing}" >&2
  if [ -n "$previous" ]; then
    set_image "$previous"
    docker compose up -d
    if healthy; then
      echo "rolled back to $previous: /ping answers" >&2
    else
      echo "::error::the previous image $previous does not answer /ping either" >&2
    fi
  else
    grep -v '^MLSHIP_IMAGE=' .env > .env.next || true
    mv .env.next .env
  fi
  exit 1
}

main < /dev/null
