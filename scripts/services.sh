#!/usr/bin/env bash
# Makes sure the Redis and PostgreSQL that the tests use are reachable, starting them (and
# installing them from Debian's packages) when they are not. Run it or source it:
#
#   bash scripts/services.sh        # exits non-zero when a service cannot be made reachable
#   source scripts/services.sh      # same, returns instead of exiting; sets nothing
#
# Redis:      host and port from REDIS_URL, default 127.0.0.1:6379; must answer PING.
# PostgreSQL: host and port from DATABASE_URL, default 127.0.0.1:5432; user `postgres` must
#             log in to database `postgres` over TCP without a password (trust auth).
# Only the host and port of a plain `scheme://[user[:password]@]host[:port][/...]` URL are
# used; anything else falls back to the defaults. A service on another host is only checked,
# never started. Idempotent: when both answer it only checks (well under a second).
# Everything it does is reported on stderr.

_services_ensure() (
    set -euo pipefail

    log() { printf 'services.sh: %s\n' "$*" >&2; }
    die() {
        log "error: $*"
        exit 1
    }
    have() { command -v "$1" >/dev/null 2>&1; }
    is_local() { [[ $1 == 127.0.0.1 || $1 == localhost ]]; }

    # Runs a command as root: directly, or through a password-less sudo.
    as_root() {
        if [[ $EUID -eq 0 ]]; then
            "$@"
        elif have sudo && sudo -n true 2>/dev/null; then
            sudo -n "$@"
        else
            die "need root to run: $*"
        fi
    }

    # Prints "host port" of the simple URL in variable $1, or the defaults $2 and $3.
    host_port() {
        local url=${!1:-} re='^[A-Za-z][A-Za-z0-9+.-]*://([^@/?#]*@)?([A-Za-z0-9._-]+)(:([0-9]+))?([/?#].*)?$'
        if [[ -z $url ]]; then
            echo "$2 $3"
        elif [[ $url =~ $re ]]; then
            echo "${BASH_REMATCH[2]} ${BASH_REMATCH[4]:-$3}"
        else
            log "cannot read a host and port from $1 (not scheme://[user@]host[:port]/...); using $2:$3"
            echo "$2 $3"
        fi
    }

    # Retries a check for up to $1 seconds.
    wait_until() {
        local deadline=$((SECONDS + $1))
        shift
        until "$@"; do
            ((SECONDS < deadline)) || return 1
            sleep 0.2
        done
    }

    # shellcheck disable=SC2016 # expanded by the inner shell
    tcp_open() { timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }

    redis_up() {
        if have redis-cli; then
            [[ $(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
        else
            # The inline protocol: PING answered by +PONG.
            # shellcheck disable=SC2016 # expanded by the inner shell
            timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "PING\r\n" >&3 &&
                IFS= read -r line <&3 && [[ $line == "+PONG"* ]]' "$REDIS_HOST" "$REDIS_PORT" \
                2>/dev/null
        fi
    }

    # The server accepts connections (whatever its authentication).
    pg_accepting() {
        if have pg_isready; then
            pg_isready -q -t 3 -h "$PG_HOST" -p "$PG_PORT"
        else
            tcp_open "$PG_HOST" "$PG_PORT"
        fi
    }

    # User postgres logs in without a password (needs psql; otherwise accepting is enough).
    pg_up() {
        if have psql; then
            [[ $(PGCONNECT_TIMEOUT=3 psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres \
                -w -X -tA -c 'select 1' 2>/dev/null) == 1 ]]
        else
            pg_accepting
        fi
    }

    pg_installed() { have pg_ctlcluster && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }

    # The newest major version with a `main` cluster, else the newest installed one.
    pg_version() {
        local bin version
        version=$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" { print $1 }' | sort -V | tail -n 1)
        if [[ -z $version ]]; then
            for bin in /usr/lib/postgresql/*/bin/postgres; do
                if [[ -x $bin ]]; then echo "$bin"; fi
            done | cut -d/ -f5 | sort -V | tail -n 1
        else
            echo "$version"
        fi
    }

    install_packages() {
        log "installing Debian packages: $*"
        as_root apt-get update -q >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
    }

    start_redis() {
        log "starting redis-server on 127.0.0.1:$REDIS_PORT"
        local dir=${TMPDIR:-/tmp}
        redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
            --save "" --appendonly no --maxmemory-policy noeviction \
            --dir "$dir" --logfile "$dir/processor-redis-$REDIS_PORT.log" >&2 ||
            die "redis-server failed to start (log: $dir/processor-redis-$REDIS_PORT.log)"
        wait_until 15 redis_up ||
            die "redis-server started but does not answer on 127.0.0.1:$REDIS_PORT"
        log "redis is up on 127.0.0.1:$REDIS_PORT"
    }

    # Lets every local TCP login in without a password (a fresh Debian cluster asks for one).
    trust_local_tcp() {
        local version=$1 hba="/etc/postgresql/$1/main/pg_hba.conf" marker='# scripts/services.sh'
        [[ -f $hba ]] || die "no $hba to allow passwordless logins"
        if ! grep -qF "$marker" "$hba"; then
            log "allowing trust auth on 127.0.0.1 and ::1 in $hba"
            local tmp
            tmp=$(mktemp)
            {
                printf '%s: local TCP logins without a password, for the tests.\n' "$marker"
                printf 'host all all 127.0.0.1/32 trust\n'
                printf 'host all all ::1/128 trust\n'
                cat "$hba"
            } >"$tmp"
            # shellcheck disable=SC2016 # expanded by the inner shell
            as_root sh -c 'cat "$1" > "$2"' sh "$tmp" "$hba" # keeps the file's owner and mode
            rm -f "$tmp"
        fi
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload >&2
    }

    start_postgres() {
        local version
        version=$(pg_version)
        [[ -n $version ]] || die "no PostgreSQL server under /usr/lib/postgresql"
        if [[ ! -d /etc/postgresql/$version/main ]]; then
            log "creating PostgreSQL cluster $version/main"
            as_root pg_createcluster "$version" main >&2
        fi
        if ! pg_accepting; then
            log "starting PostgreSQL cluster $version/main"
            as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
            wait_until 30 pg_accepting ||
                die "PostgreSQL $version/main does not accept connections on $PG_HOST:$PG_PORT (see pg_lsclusters)"
        fi
        if ! pg_up; then
            trust_local_tcp "$version"
            wait_until 10 pg_up ||
                die "user postgres cannot log in without a password on $PG_HOST:$PG_PORT"
        fi
        log "postgres is up on $PG_HOST:$PG_PORT"
    }

    local REDIS_HOST REDIS_PORT PG_HOST PG_PORT
    read -r REDIS_HOST REDIS_PORT < <(host_port REDIS_URL 127.0.0.1 6379)
    read -r PG_HOST PG_PORT < <(host_port DATABASE_URL 127.0.0.1 5432)

    local redis_ok=true pg_ok=true
    redis_up || redis_ok=false
    pg_up || pg_ok=false
    if $redis_ok && $pg_ok; then
        log "redis $REDIS_HOST:$REDIS_PORT and postgres $PG_HOST:$PG_PORT are up"
        return 0
    fi

    $redis_ok || is_local "$REDIS_HOST" ||
        die "redis on $REDIS_HOST:$REDIS_PORT is not reachable (not starting one on another host)"
    $pg_ok || is_local "$PG_HOST" ||
        die "postgres on $PG_HOST:$PG_PORT is not reachable (not starting one on another host)"

    local missing=()
    $redis_ok || have redis-server || missing+=(redis-server)
    $pg_ok || pg_installed || missing+=(postgresql)
    if ((${#missing[@]} > 0)); then
        install_packages "${missing[@]}"
        # A package's install scripts may have started the service already.
        $redis_ok || ! redis_up || redis_ok=true
        $pg_ok || ! pg_up || pg_ok=true
    fi

    if $redis_ok; then log "redis is up on $REDIS_HOST:$REDIS_PORT"; else start_redis; fi
    if $pg_ok; then log "postgres is up on $PG_HOST:$PG_PORT"; else start_postgres; fi
)

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    _services_ensure "$@"
else
    _services_ensure "$@" || return
    unset -f _services_ensure
fi
