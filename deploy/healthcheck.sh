#!/bin/bash
# Container HEALTHCHECK for herald: GET /healthz on this container's own listener.
#
# The runtime image has no curl or wget; bash's /dev/tcp is enough for one plain-HTTP
# request, so the image needs no extra package. Exit 0 when herald answers 200, 1
# otherwise (Docker's HEALTHCHECK --timeout bounds a hang; `read -t` bounds it too).
#
# The port comes from HERALD_LISTEN (default 127.0.0.1:8080), the same variable herald
# reads; the check always connects over loopback, which reaches a listener bound to
# 0.0.0.0 or [::] as well. It does not work for a listener bound to one non-loopback
# address only: point HERALD_HEALTHCHECK_ADDR at that address then.
set -u

listen="${HERALD_LISTEN:-127.0.0.1:8080}"
port="${listen##*:}"
addr="${HERALD_HEALTHCHECK_ADDR:-127.0.0.1}"

exec 3<>"/dev/tcp/${addr}/${port}" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3 || exit 1
IFS= read -r -t 5 status <&3 || exit 1
exec 3<&-

case "$status" in
    "HTTP/1."?" 200 "*) exit 0 ;;
    *)
        echo "herald /healthz on ${addr}:${port} answered: ${status%$'\r'}" >&2
        exit 1
        ;;
esac
