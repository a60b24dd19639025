#!/usr/bin/env bash
# Start the services the integration tests talk to (Redis, PostgreSQL) when they are not
# already running, installing them from the distribution's packages if needed (and the
# browser the web page's tests drive: Debian's chromium, never a downloaded one), and create
# what the tests use there: the PostgreSQL role and database docqa_test (password
# docqa_test, allowed to create the databases some tests make). Idempotent.
# Tests that still cannot reach a service skip with the reason, or fail when
# DOCQA_TEST_REQUIRE_SERVICES=1 (as .ci/run sets).
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

# The role and database of the tests. As the postgres superuser: over TCP where the server
# trusts local connections, else through the local socket as the postgres system user.
pg_admin() {
  if have psql && psql -h "$PG_HOST" -U postgres -d postgres -tAc "select 1" >/dev/null 2>&1; then
    psql -h "$PG_HOST" -U postgres -d postgres -v ON_ERROR_STOP=1 -q "$@"
  elif [ "$(id -u)" = 0 ] && have runuser; then
    runuser -u postgres -- psql -d postgres -v ON_ERROR_STOP=1 -q "$@"
  elif have sudo; then
    sudo -n -u postgres psql -d postgres -v ON_ERROR_STOP=1 -q "$@"
  else
    return 1
  fi
}
if pg_up; then
  if pg_admin -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'docqa_test') THEN
        CREATE ROLE docqa_test LOGIN CREATEDB PASSWORD 'docqa_test';
      END IF;
    END \$\$;" >/dev/null 2>&1 &&
     { pg_admin -tAc "SELECT 1 FROM pg_database WHERE datname = 'docqa_test'" 2>/dev/null | grep -q 1 ||
       pg_admin -c "CREATE DATABASE docqa_test OWNER docqa_test" >/dev/null 2>&1; }; then
    echo "postgresql: role and database docqa_test ready"
  else
    echo "postgresql: could not create the docqa_test role and database; its tests will skip"
  fi
fi
# The web page's tests drive the distribution's Chromium through Playwright (no browser
# download at test time); DOCQA_TEST_CHROMIUM points them at another executable.
if have chromium || [ -n "${DOCQA_TEST_CHROMIUM:-}" ]; then
  echo "chromium: installed"
else
  apt_install chromium && echo "chromium: installed" ||
    echo "chromium: could not install it; the web page's tests will skip"
fi
exit 0
