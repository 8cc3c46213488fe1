#!/bin/sh
# The quickstart's demo services: harmless shell loops that drd's emergency shutdown
# stops and its rollback starts again, without root (see quickstart.toml).
#
#   sh examples/quickstart-demo.sh         start demo-db and demo-web in the background
#   sh examples/quickstart-demo.sh NAME    be the service NAME (what a rollback runs)
set -eu
state="$(cd "$(dirname "$0")" && pwd)/quickstart-state"
if [ $# -eq 0 ]; then
    for name in demo-db demo-web; do
        sh "$0" "$name" </dev/null >/dev/null 2>&1 &
        echo "started $name (pid $!)"
    done
    exit 0
fi
mkdir -p "$state"
echo $$ >"$state/$1.pid"
# Like a database flushing before it exits: SIGTERM takes about two seconds.
trap 'sleep 2; exit 0' TERM
while :; do sleep 1; done
