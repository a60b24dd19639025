#!/usr/bin/env bash
# Start the services the integration tests talk to (Redis, PostgreSQL) when they are not
# already running, installing them from the distribution's packages if needed. Idempotent.
# Tests that still cannot reach a service skip with the reason.
set -uo pipefail

REDIS_PORT=${DOCQA_TEST_REDIS_PORT:-6379}
PG_HOST=${DOCQA_TEST_PG_HOST:-127.0.0.1}

have() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif have sudo; then sudo -n "$@"; else return 1; fi; }
apt_install() {
  have apt-get || return 1
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { as_root apt-get update -q >/dev/null 2>&1 &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; }
}

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/"$REDIS_PORT") 2>/dev/null; }
if redis_up; then
  echo "redis: running on 127.0.0.1:$REDIS_PORT"
else
  have redis-server || apt_install redis-server || echo "redis: could not install redis-server"
  if have redis-server; then
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir /tmp >/dev/null && sleep 0.5
  fi
  redis_up && echo "redis: started on 127.0.0.1:$REDIS_PORT" || echo "redis: unavailable; its tests will skip"
fi

pg_up() { have pg_isready && pg_isready -q -h "$PG_HOST" -p 5432; }
if pg_up; then
  echo "postgresql: running on $PG_HOST:5432"
else
  have pg_ctlcluster || apt_install postgresql || echo "postgresql: could not install it"
  if have pg_ctlcluster; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] && as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1
    sleep 1
  fi
  pg_up && echo "postgresql: started" || echo "postgresql: unavailable; its tests will skip"
fi
exit 0
