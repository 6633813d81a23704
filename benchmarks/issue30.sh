#!/bin/bash
# Issue 30's runs in chunks that each fit in a working session (a machine here keeps no process from one session
# to the next, and the whole plan is some 13 hours of one core): each chunk writes one JSON into
# benchmarks/results/issue30/, which is committed; a chunk whose JSON is there is skipped, so running the script
# again does what is left. Digits, dense network, embedded ring-sim, validation, the whole validation split
# evaluated every 1 % of a run and no training sample (270 queries an evaluation), at the lowest CPU priority.
#
#   issue30.sh RUNS tune METHOD...    7 variants of each METHOD on tuning seed 10, device 0: the same budget of
#                                     7 tuning runs for every method                  -> tune-METHOD.json
#   issue30.sh RUNS report METHOD...  METHOD's best variant on validation, frozen (--tuned tune-METHOD.json), on
#                                     fresh seed s with simulated device s, s = 0, 1, 2 -> report-METHOD-s.json
#   issue30.sh RUNS scale HIDDEN[:PGT_STEPS]...
#                                     pgt, node, twin and dyna at their defaults with a head of HIDDEN units
#                                     (0, 67, 304: 850, 3,411, 13,602 trainable parameters), seed 0, device 0;
#                                     pgt's steps PGT_STEPS if given (its default grows with the parameters:
#                                     3,000, 12,100 and 48,100)                        -> scale-hHIDDEN.json
#
# RUNS/CHUNK holds a chunk's sessions (one HDF5 file per run; an interrupted run is resumed from it) and log; labpgt from PATH or
# $LABPGT. Tables: benchmarks/summarise.py on the JSONs (RESULTS.md section 20 gives the commands).
set -euo pipefail
runs=$(readlink -f "${1:?usage: issue30.sh RUNS tune|report|scale WHAT...}")
stage=${2:?usage: issue30.sh RUNS tune|report|scale WHAT...}
shift 2
results=$(dirname "$(readlink -f "$0")")/results/issue30
labpgt=${LABPGT:-labpgt}
mkdir -p "$runs" "$results"
# nice counts only inside a scheduler autogroup, and an autogroup is a whole terminal session: lower the priority
# of a session of its own (setsid), not of the shell that started the script (everything typed there after it)
if [ -z "${ISSUE30_OWN_SESSION:-}" ]; then ISSUE30_OWN_SESSION=1 exec setsid --wait bash "$0" "$runs" "$stage" "$@"; fi
echo 19 > /proc/self/autogroup 2>/dev/null || true

declare -A variants=(
  [readout]="readout readout:encoder_init=lda readout:encoder_init=pca readout:ridge_penalty=0.1
    readout:ridge_penalty=10.0 readout:encoder_init=lda:ridge_penalty=0.1 readout:encoder_init=lda:ridge_penalty=10.0"
  [dyna]="dyna dyna:encoder_init=lda dyna:lr=0.005 dyna:model_steps=10 dyna:model_steps=40 dyna:batch_size=16
    dyna:twin_fit_iterations=100"
  [twin]="twin twin:encoder_init=lda twin:lr=0.005 twin:lr=0.02 twin:twin_width=128 twin:twin_check_every=50
    twin:directions=8"
  [pgt]="pgt pgt:encoder_init=lda pgt:optimizer=adam:lr=0.001 pgt:lr=0.004 pgt:delta=0.05 pgt:batch_size=64
    pgt:r=2:p=0.0"
  [node]="node node:encoder_init=lda node:lr=0.005 node:lr=0.02 node:directions=8 node:delta=0.02 node:batch_size=16"
  [node-jac]="node-jac node-jac:encoder_init=lda node-jac:lr=0.005 node-jac:lr=0.02 node-jac:delta=0.02
    node-jac:delta=0.1 node-jac:batch_size=16"
  [spsa]="spsa spsa:encoder_init=lda spsa:lr=0.01 spsa:lr=0.0025 spsa:delta=0.1 spsa:optimizer=adam:lr=0.002
    spsa:spsa_calibrate=true"
  [mezo]="mezo mezo:encoder_init=lda mezo:lr=0.004 mezo:lr=0.001 mezo:delta=0.05 mezo:optimizer=adam:lr=0.002
    mezo:batch_size=64"
  [cma]="cma cma:encoder_init=lda cma:cma_sigma=0.05 cma:cma_sigma=0.2 cma:cma_population=32 cma:cma_diagonal=true
    cma:batch_size=64"
)

benchmark() {
  local json=$1 workers=$2
  shift 2
  local chunk=$runs/${json%.json}
  [ -e "$results/$json" ] && return 0
  mkdir -p "$chunk"
  local attempt status
  for attempt in 1 2 3 4 5; do  # exit 75: a run given up because its workers kept dying; it resumes from its session
    status=0
    nice -n 19 "$labpgt" benchmark --task digits --reservoir ring-sim --eval-train-samples 0 --workers "$workers" \
      --out-dir "$chunk" --json "$chunk/$json" --plot "$chunk/${json%.json}.png" "$@" >> "$chunk/log" 2>&1 || status=$?
    [ "$status" -eq 75 ] || break
  done
  [ "$status" -eq 0 ] || return "$status"
  cp "$chunk/$json" "$results/$json"  # only a whole chunk reaches the results
}

case $stage in
  tune)
    for method in "$@"; do
      [ -n "${variants[$method]:-}" ] || { echo "issue30.sh: no variants of $method" >&2; exit 2; }
      methods=$(echo ${variants[$method]} | tr ' ' ',')
      benchmark "tune-$method.json" 2 --methods "$methods" --target "$method" --first-seed 10 --seeds 1 \
        --ceiling-steps 0
    done ;;
  report)
    for method in "$@"; do
      [ -e "$results/tune-$method.json" ] || { echo "issue30.sh: $method is not tuned yet" >&2; exit 2; }
      ceiling=0
      [ "$method" = readout ] && ceiling=2000  # the digital ceiling of each seed's split, once
      export -f benchmark; export runs results labpgt
      printf '%s\n' 0 1 2 | xargs -P 2 -I{} bash -c "benchmark report-$method-{}.json 0 --methods $method \
        --target $method --tuned $results/tune-$method.json --first-seed {} --seeds 1 --set ring_device={} \
        --ceiling-steps $ceiling"
    done ;;
  scale)
    for size in "$@"; do
      hidden=${size%%:*} steps=()
      [ "$size" != "$hidden" ] && steps=(--steps "pgt=${size#*:}")
      benchmark "scale-h$hidden.json" 2 --methods pgt,node,twin,dyna --hidden "$hidden" "${steps[@]}" \
        --first-seed 0 --seeds 1 --ceiling-steps 0
    done ;;
  *) echo "issue30.sh: the stage is tune, report or scale, not $stage" >&2; exit 2 ;;
esac
