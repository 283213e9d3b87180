#!/bin/bash
# Fault figures on the emulated robot (real time; the control loop at the default priority)
export ROS_DOMAIN_ID=203 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
P=.venv/bin/python
$P bench/bench_robot_follow.py --models sim=config/models/hexapod.pt robot=runs/robot/models/robot.pt --paths config/paths/straight.yaml --out results/robot_emulator/unplug --unplug-at-step 60 --unplug-s 2
$P bench/bench_robot_follow.py --models sim=config/models/hexapod.pt robot=runs/robot/models/robot.pt --out results/robot_emulator/faults_1pct --emulator-config results/robot_emulator/faults_1pct.yaml
echo FAULTS DONE
