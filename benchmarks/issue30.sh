#!/bin/bash
# Issue 30's runs, in order, each resumable (run the script again to fill the gaps), at the lowest priority so that
# they take only the CPU nobody else wants:
#   1. tuning: 9 methods x 7 variants x tuning seeds 10-11, an equal budget of 14 runs per method, each at its
#      method's default steps (digits, dense network, embedded ring-sim, device 0, validation);
#   2. reported: each method's best variant on validation, frozen (--tuned), on fresh seeds 0-2 x devices 0-2;
#   3. scaling: pgt, node, twin and dyna at their defaults, heads of 0, 67 and 304 hidden units (850, 3,411 and
#      13,602 trainable parameters), seeds 0-1.
# Usage: benchmarks/issue30.sh DIR   (sessions, JSONs, plots and logs go to DIR; labpgt from PATH or $LABPGT)
set -euo pipefail
dir=${1:?usage: issue30.sh DIR}
labpgt=${LABPGT:-labpgt}
mkdir -p "$dir" && cd "$dir"
echo 19 > /proc/self/autogroup 2>/dev/null || true  # nice counts only inside a scheduler autogroup
# evaluations measure the validation split only (no training samples, which nothing decides on), every 1 % of a run
run() { nice -n 19 "$labpgt" benchmark --task digits --reservoir ring-sim --eval-train-samples 0 --workers 2 "$@"; }

variants=(
  readout readout:encoder_init=lda readout:encoder_init=pca readout:ridge_penalty=0.1 readout:ridge_penalty=10.0
  readout:encoder_init=lda:ridge_penalty=0.1 readout:encoder_init=lda:ridge_penalty=10.0
  dyna dyna:encoder_init=lda dyna:lr=0.005 dyna:model_steps=10 dyna:model_steps=40 dyna:batch_size=16
  dyna:twin_fit_iterations=100
  twin twin:encoder_init=lda twin:lr=0.005 twin:lr=0.02 twin:twin_width=128 twin:twin_check_every=50 twin:directions=8
  pgt pgt:encoder_init=lda pgt:optimizer=adam:lr=0.001 pgt:lr=0.004 pgt:delta=0.05 pgt:batch_size=64 pgt:r=2:p=0.0
  node node:encoder_init=lda node:lr=0.005 node:lr=0.02 node:directions=8 node:delta=0.02 node:batch_size=16
  node-jac node-jac:encoder_init=lda node-jac:lr=0.005 node-jac:lr=0.02 node-jac:delta=0.02 node-jac:delta=0.1
  node-jac:batch_size=16
  spsa spsa:encoder_init=lda spsa:lr=0.01 spsa:lr=0.0025 spsa:delta=0.1 spsa:optimizer=adam:lr=0.002
  spsa:spsa_calibrate=true
  mezo mezo:encoder_init=lda mezo:lr=0.004 mezo:lr=0.001 mezo:delta=0.05 mezo:optimizer=adam:lr=0.002
  mezo:batch_size=64
  cma cma:encoder_init=lda cma:cma_sigma=0.05 cma:cma_sigma=0.2 cma:cma_population=32 cma:cma_diagonal=true
  cma:batch_size=64
)
run --methods "$(IFS=,; echo "${variants[*]}")" --first-seed 10 --seeds 2 \
  --out-dir runs --json tune30.json --plot tune30.png >> tune.log 2>&1
run --methods readout,dyna,twin,pgt,node,node-jac,spsa,mezo,cma --tuned tune30.json --first-seed 0 --seeds 3 \
  --set ring_device=0,1,2 --out-dir reported --json reported30.json --plot reported30.png >> reported.log 2>&1
for hidden in 0 67 304; do
  run --methods pgt,node,twin,dyna --hidden "$hidden" --first-seed 0 --seeds 2 \
    --out-dir "scaling-h$hidden" --json "scaling-h$hidden.json" --plot "scaling-h$hidden.png" >> scaling.log 2>&1
done
summarise=$(dirname "$(readlink -f "$0")")/summarise.py
{ python "$summarise" reported30.json --runs reported --ratios all
  python "$summarise" scaling-h0.json scaling-h67.json scaling-h304.json --scaling 0.8; } > summary.txt 2>&1
echo "issue 30's runs done $(date)"
