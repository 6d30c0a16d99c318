#!/bin/bash
# twistd_frontend.sh [CHECKOUT] - `twistd fastcgi` of a checkout as an extra
# front end of ../shared/bench/run_anchors.sh, serving the shared backend at
# "/" (run_anchors.sh checks and loads "/"):
#
#   ./run_anchors.sh -f apache-reuse,twisted,txfastcgi,txfastcgi-old \
#       -x 'txfastcgi=exec /path/to/main/bench/twistd_frontend.sh' \
#       -x 'txfastcgi-old=exec /path/to/main/bench/twistd_frontend.sh /tmp/old'
#
# Uses PORT, FCGI_SOCKET and RUN from run_anchors.sh; CHECKOUT (default: this
# one) is where txfastcgi is imported from (a `git worktree` of an older
# commit, to compare in one run); the twistd is this checkout's venv's.
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
CHECKOUT=${1:-$HERE}
NAME=$(basename "$CHECKOUT")
CONF=$RUN/twistd-frontend-$NAME.conf
cat > "$CONF" <<EOC
Listen 127.0.0.1:$PORT
ServerRoot $RUN
ErrorLog twistd-frontend-$NAME-error.log
DocumentRoot $RUN
ExternalAppClass $RUN/hello -socket $FCGI_SOCKET
Alias / $RUN/hello
<Location />
SetHandler fastcgi-script
</Location>
EOC
cd "$CHECKOUT"
PYTHONPATH=$CHECKOUT exec "$HERE/.venv/bin/twistd" -n --pidfile= \
    --logfile="$RUN/twistd-frontend-$NAME.log" fastcgi --config "$CONF"
