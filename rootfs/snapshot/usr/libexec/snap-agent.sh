#!/bin/sh
# The guest end of rootfs/vm-snapshot-test.py: reads `RUN ID COMMAND` lines
# from the second serial port (ttyS1, a socket on the host), runs each
# command with sh and writes its output, then `END ID STATUS`. The serial
# line is raw: no echo, no newline translation. Nothing else is on it.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
tty=/dev/ttyS1
stty -F "$tty" raw -echo 115200 || exit 1
exec <"$tty" >"$tty" 2>&1
echo "AGENT ready"
while IFS= read -r line; do
    case "$line" in
    "RUN "*)
        rest=${line#RUN }
        id=${rest%% *}
        sh -c "${rest#* }" </dev/null
        echo "END $id $?"
        ;;
    esac
done
