#!/bin/bash
# The Done-when runs on the emulated robot (real time; the control loop at the default priority)
export ROS_DOMAIN_ID=202 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
P=.venv/bin/python
$P bench/bench_robot_follow.py --models robot=runs/robot/models/robot.pt sim=config/models/hexapod.pt --out results/robot_emulator/follow
$P bench/bench_robot_follow.py --models robot=runs/robot/models/robot.pt --out results/robot_emulator/faults_1pct --emulator-config results/robot_emulator/faults_1pct.yaml
$P bench/bench_robot_follow.py --models robot=runs/robot/models/robot.pt --paths config/paths/u_turn.yaml --out results/robot_emulator/unplug --unplug-at-step 60 --unplug-s 2
echo EVAL DONE
