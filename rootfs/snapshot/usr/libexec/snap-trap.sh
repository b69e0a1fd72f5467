#!/bin/sh
# The snap-signal service: counts the SIGUSR1s it gets, one line each in
# /run/snap-signals. `ready` is written once the trap is set.
trap 'echo "SIGUSR1 $$" >>/run/snap-signals' USR1
echo ready >/run/snap-trap-ready
while :; do
    # The whole process group gets the signal: sleep dies of it, wait
    # returns, and the trap runs.
    sleep 1000000 &
    wait
done
