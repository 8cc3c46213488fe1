#!/usr/bin/env bash
# Checks drd.service's SystemCallFilter= and CapabilityBoundingSet= against what drd
# really does, on a machine where systemd is not PID 1 (packaging/README.md says why
# and what it found). Runs a workload with drd as root: backups (files with setuid and
# setgid bits, files of another user, a fifo, a symlink, SQLite, a command, a Docker
# container with a volume), two tiers, restores (also into another user's folder),
# verify, prune, the monitors, metrics, a shutdown and recovery of a Docker service and
# of a process running as another user, every drill, validate, SIGHUP, SIGUSR1,
# SIGTERM, and the offline restore and verify.
#
#   packaging/hardening-check.sh syscalls [BIN_DIR]   the workload under strace -f; every
#                                                     system call it made must be in the
#                                                     unit's filter
#   packaging/hardening-check.sh caps [BIN_DIR]       the workload with the unit's bounding
#                                                     set, then without each capability
#
# Needs root, strace, setpriv, Docker and Debian's busybox-static; BIN_DIR holds drd and
# drctl (default target/debug). Uses uid/gid 1000 as "another user" and /tmp/drd-hc.
set -u
cd "$(dirname "$0")/.."
mode=${1:?syscalls or caps}
bin=$(realpath "${2:-target/debug}")
unit=systemd/drd.service
top=/tmp/drd-hc
mkdir -p "$top"

# The workload in folder $1, drd started as `$2 drd run ...`; each step's exit status
# (and whether restores put back every mode and owner) goes to $1/steps.txt.
workload() {
    local s=$1 launch=$2
    rm -rf "$s"
    # The socket in a folder others may enter, as /run/drd is: the auth_outage drill
    # connects as a user without a role.
    mkdir -p "$s/data/sub" "$s/state" "$s/run" "$s/restores/elsewhere"
    echo hello >"$s/data/plain"
    cp /bin/true "$s/data/suid" && chmod 4755 "$s/data/suid"
    chmod 2775 "$s/data/sub" && echo x >"$s/data/sub/other" && chown 1000:1000 "$s/data/sub/other"
    mkfifo "$s/data/fifo" && ln -s plain "$s/data/link"
    mkdir "$s/data/private" && echo secret >"$s/data/private/secret"
    chmod 600 "$s/data/private/secret" && chown -R 1000:1000 "$s/data/private"
    chmod 700 "$s/data/private"
    cp /bin/true "$s/data/sgid" && chown 1000:1000 "$s/data/sgid" && chmod 2755 "$s/data/sgid"
    chown 1000:1000 "$s/restores/elsewhere"
    "$bin/drd" key generate --out "$s/main.key" >/dev/null
    if ! docker image inspect drd-hc:1 >/dev/null 2>&1; then
        local r
        r=$(mktemp -d)
        mkdir -p "$r/bin" "$r/tmp" "$r/data" && cp /bin/busybox "$r/bin/"
        ln -s busybox "$r/bin/sh" && ln -s busybox "$r/bin/sleep"
        tar -C "$r" -c . | docker import - drd-hc:1 >/dev/null
        rm -rf "$r"
    fi
    docker rm -f drd-hc >/dev/null 2>&1
    docker volume rm drd-hc >/dev/null 2>&1
    docker run -d --name drd-hc -v drd-hc:/data drd-hc:1 /bin/sleep 100000 >/dev/null
    docker exec drd-hc sh -c 'echo vol > /data/f'
    local start_proc="setpriv --reuid=1000 --regid=1000 --clear-groups sleep 100000 & echo \$! > $s/proc.pid"
    cat >"$s/drd.toml" <<TOML
[daemon]
state_dir = "$s/state"
socket = "$s/run/drd.sock"
socket_group = "drd"
[keys]
files = ["$s/main.key"]
[tiers.local]
kind = "dir"
path = "$s/repo"
[tiers.copy]
kind = "dir"
path = "$s/copy"
[jobs.files]
tiers = ["local", "copy"]
sources = [
  { kind = "path", path = "$s/data" },
  { kind = "sqlite", path = "$s/state/catalog.db" },
  { kind = "command", name = "uname", run = ["uname", "-a"], timeout = "10s" },
]
[jobs.app]
tiers = ["local"]
sources = [{ kind = "docker", containers = ["drd-hc"], consistency = "pause" }]
[services.ctr]
driver = "docker"
container = "drd-hc"
stop_timeout = "5s"
health = { docker = true, timeout = "10s" }
drill = true
[services.proc]
driver = "process"
pidfile = "$s/proc.pid"
start = ["sh", "-c", "$start_proc"]
depends_on = ["ctr"]
stop_timeout = "5s"
preserve = ["files"]
[monitors.resources]
interval = "2s"
disk = [{ mount = "/", fire = "99%", clear = "98%" }]
memory_available = { fire = "1%", clear = "2%" }
load = { fire = 100.0, clear = 90.0 }
memory_pressure = { fire = "90%", clear = "80%" }
open_files = { fire = "90%", clear = "80%" }
[monitors.network]
targets = ["tcp://127.0.0.1:9477", "dns://localhost", "http://127.0.0.1:9477/metrics"]
interval = "2s"
[metrics]
listen = "127.0.0.1:9477"
textfile = "$s/drd.prom"
interval = "2s"
[restore]
allowed_targets = ["$s/restores"]
TOML
    getent group drd >/dev/null || groupadd --system drd
    sh -c "$start_proc"
    # shellcheck disable=SC2086 # $launch is a command line
    $launch "$bin/drd" run --config "$s/drd.toml" --log-format text 2>"$s/drd.log" &
    local launched=$!
    export DRD_SOCKET=$s/run/drd.sock
    for _ in $(seq 50); do [ -S "$DRD_SOCKET" ] && break; sleep 0.2; done
    # Each step's exit status and command line, with the run's own paths and bounding set
    # taken out so two runs compare line by line.
    step() {
        "$@" >>"$s/out.txt" 2>&1
        echo "rc=$? $*" | sed "s|$bin/||g; s|$s|RUN|g; s|--bounding-set [^ ]* ||" >>"$s/steps.txt"
    }
    modes() { (cd "$1$s/data" 2>/dev/null && find . -printf '%m %u %g %p\n' | sort); }
    same_modes() {
        diff <(modes "") <(modes "$1") >>"$s/out.txt" 2>&1
        echo "rc=$? every mode and owner restored in RUN/${1#"$s/"}" >>"$s/steps.txt"
    }
    local c=$bin/drctl
    step "$c" status
    step "$c" backup --job files
    step "$c" backup --job app
    step "$c" restore --backup-id latest --job files --target "$s/restores/r1"
    step "$c" restore --backup-id latest --job files --target "$s/restores/elsewhere/r2"
    same_modes "$s/restores/r1"
    same_modes "$s/restores/elsewhere/r2"
    step "$c" verify --read-data
    step "$c" prune --dry-run
    sleep 5
    step "$c" monitors
    step "$c" shutdown --trigger manual --yes
    step "$c" recover --yes
    step "$c" test run
    step "$c" validate
    local pid
    pid=$(pgrep -f "^$bin/drd run --config $s/drd.toml")
    [ -n "$pid" ] && kill -HUP "$pid" && sleep 1
    step "$c" audit verify
    [ -n "$pid" ] && kill -USR1 "$pid" && sleep 8
    step "$c" recover --yes
    [ -n "$pid" ] && kill -TERM "$pid" && sleep 3
    pkill -u 1000 -x sleep
    wait "$launched"
    echo "rc=$? drd run" >>"$s/steps.txt"
    step $launch "$bin/drd" restore --repo "$s/repo" --key "$s/main.key" --backup-id latest \
        --job files --target "$s/offline"
    same_modes "$s/offline"
    step $launch "$bin/drd" verify --repo "$s/repo" --key "$s/main.key" --read-data
    docker rm -f drd-hc >/dev/null
    docker volume rm drd-hc >/dev/null
}

# A unit setting's words, every line of it.
setting() { sed -n "s/^$1=//p" "$unit" | tr ' ' '\n' | grep -v '^$'; }

# A syscall group's members, groups expanded.
members() {
    systemd-analyze syscall-filter "$1" | sed 's/^ *//' | grep -v -e '^#' -e '^$' -e "^$1\$" |
        while read -r name; do
            case $name in @*) members "$name" ;; *) echo "$name" ;; esac
        done
}

case $mode in
syscalls)
    # Each syscall made by drd and its children, by name, against the filter: the
    # unit's allow list less its deny list (lines starting with ~).
    # -ff: one file per process, so the offline commands' traces do not overwrite drd's.
    rm -f "$top"/strace.log.*
    trace="strace -f -ff -qq -e signal=none -o $top/strace.log"
    workload "$top/strace" "$trace"
    grep -h -o -E '^[a-z0-9_]+\(' "$top"/strace.log.* | sed 's/($//' | sort -u >"$top/used.txt"
    : >"$top/allowed.txt"
    : >"$top/denied.txt"
    setting SystemCallFilter | while read -r group; do
        case $group in
        ~*) members "${group#\~}" >>"$top/denied.txt" ;;
        *) members "$group" >>"$top/allowed.txt" ;;
        esac
    done
    sort -u -o "$top/allowed.txt" "$top/allowed.txt"
    sort -u -o "$top/denied.txt" "$top/denied.txt"
    comm -23 "$top/allowed.txt" "$top/denied.txt" >"$top/filter.txt"
    echo "steps (exit status):" && cat "$top/strace/steps.txt"
    echo "$(wc -l <"$top/used.txt") system calls made: $(tr '\n' ' ' <"$top/used.txt")"
    outside=$(comm -23 "$top/used.txt" "$top/filter.txt")
    [ -z "$outside" ] || { echo "made, but not allowed by the unit: $outside"; exit 1; }
    echo "every one is allowed by the unit's SystemCallFilter="
    ;;
caps)
    caps=$(setting CapabilityBoundingSet | tr 'A-Z' 'a-z' | sed 's/^cap_//' | paste -sd ' ')
    bset() { local s=-all c; for c in $caps; do [ "$c" = "$1" ] || s="$s,+$c"; done; echo "$s"; }
    for drop in none $caps; do
        workload "$top/without-$drop" "setpriv --bounding-set $(bset "$drop") --no-new-privs"
        if [ "$drop" = none ]; then
            echo "with the unit's bounding set ($caps):"
            cat "$top/without-none/steps.txt"
        else
            echo "without $drop, steps that end otherwise:"
            diff "$top/without-none/steps.txt" "$top/without-$drop/steps.txt" | sed -n 's/^> /  /p'
        fi
    done
    ;;
*) echo "usage: $0 syscalls|caps [BIN_DIR]" >&2; exit 64 ;;
esac
