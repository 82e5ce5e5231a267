#!/bin/sh
# Checkpoint witnessing on the operator's side (deploy/reserve-witness.service).
#
# Each run: fetch the service's current signed checkpoint (GET /log/checkpoint, public),
# verify that the database's history (on the read replica where there is one) is
# consistent with the checkpoint kept by the previous run and with the log key pinned at
# installation, then keep the new checkpoint and add it to a dated archive. A rolled-back
# or rewritten log fails here and the unit fails (alert on it). The archive is what
# partners' witnesses (C2SP tlog-witness) cosign and what restore drills use for
# `reserve restore --checkpoint`.
set -eu
state=${WITNESS_STATE:-/var/lib/reserve-witness}
url=${WITNESS_URL:-http://127.0.0.1:8000/log/checkpoint}
reserve=${RESERVE_BIN:-/opt/reserve-ledger/.venv/bin/reserve}
mkdir -p "$state/archive"
curl --fail --silent --show-error --max-time 30 "$url" > "$state/current.note.tmp"
if [ -s "$state/last.note" ]; then
    "$reserve" verify --trust "$state/log.pub" --checkpoint "$state/last.note"
else
    "$reserve" verify --trust "$state/log.pub"
fi
"$reserve" verify --trust "$state/log.pub" --checkpoint "$state/current.note.tmp"
cp "$state/current.note.tmp" "$state/archive/$(date -u +%Y%m%dT%H%M%SZ).note"
mv "$state/current.note.tmp" "$state/last.note"
