#!/bin/bash
# Fault runs with the held-5 model and delay compensation (real time; the control loop at the default priority)
export ROS_DOMAIN_ID=207 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
P=.venv/bin/python
$P bench/bench_robot_follow.py --delay-compensation --models robot_hold5=runs/robot/models/robot_hold5.pt --out results/robot_emulator/faults_1pct_dc --emulator-config results/robot_emulator/faults_1pct.yaml
$P bench/bench_robot_follow.py --delay-compensation --models robot_hold5=runs/robot/models/robot_hold5.pt --paths config/paths/u_turn.yaml --out results/robot_emulator/unplug_dc --unplug-at-step 60 --unplug-s 2
echo FINAL DONE
