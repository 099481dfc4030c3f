#!/bin/bash
# The container's health check: GET /healthz on METRICS_ADDR, with bash's /dev/tcp so that
# the runtime image needs no HTTP client. Exit 0 when the answer is 200.
set -u
addr=${METRICS_ADDR:-0.0.0.0:9090}
port=${addr##*:}
host=${addr%:*}
host=${host#[}
host=${host%]}
# A wildcard address is reached on loopback.
case $host in
    0.0.0.0 | "") host=127.0.0.1 ;;
    ::) host=::1 ;;
esac
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
IFS= read -r -t 2 status <&3 || exit 1
[[ $status == *" 200 "* ]]
