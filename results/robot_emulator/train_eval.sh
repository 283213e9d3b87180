#!/bin/bash
nice -n 10 .venv/bin/mbmf-ros train --agent hexapod --bags runs/robot/bags/iid runs/robot/bags/hold5 --out runs/robot/models/robot.pt --epochs 40 --seed 0 > runs/robot/train.log 2>&1 || exit 1
runs/robot/eval.sh
