# Sourced by .ci/run: starts a throwaway PostgreSQL 15 server on 127.0.0.1 for
# the storage tests and exports SNAC_PG_URL. The cluster lives in a temp dir
# and is stopped (and removed) when .ci/run exits.
#
# PostgreSQL refuses to run as root, so as root the server runs as the
# `postgres` user (or `nobody`); as anyone else it runs as that user.

pg_setup() {
    local bin
    bin="${SNAC_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}"
    if [ ! -x "$bin/initdb" ]; then
        echo "10-postgres.sh: no PostgreSQL binaries (looked in ${bin:-/usr/lib/postgresql/*/bin}; set SNAC_PG_BIN)" >&2
        return 1
    fi
    local dir run_as=()
    dir="$(mktemp -d /tmp/snac-pg.XXXXXX)"
    if [ "$(id -u)" = 0 ]; then
        local user=postgres
        id "$user" >/dev/null 2>&1 || user=nobody
        chown "$user" "$dir"
        run_as=(runuser -u "$user" --)
    fi
    local port
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "${run_as[@]}" "$bin/initdb" -D "$dir/data" -U snac --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; return 1; }
    "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300" start >/dev/null ||
        { cat "$dir/server.log" >&2; return 1; }
    ci_on_exit "${run_as[*]} $bin/pg_ctl -D $dir/data -m immediate stop >/dev/null; rm -rf $dir"
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U snac snac
    export SNAC_PG_URL="postgresql://snac@127.0.0.1:$port/snac"
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') at $SNAC_PG_URL (cluster in $dir)"
}
pg_setup
