#!/bin/bash
# 16 000 random transitions (13.3 min of real time) from the emulated robot, as make-model's hexapod recipe
export ROS_DOMAIN_ID=201 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
M=.venv/bin/mbmf-ros
[ -d runs/robot/bags/iid/episode_0049 ] || $M collect --robot emulator --rollouts 50 --steps 200 --hold-steps 1 --seed 11 --out runs/robot/bags/iid
[ -d runs/robot/bags/hold5/episode_0029 ] || $M collect --robot emulator --rollouts 30 --steps 200 --hold-steps 5 --seed 12 --out runs/robot/bags/hold5
echo COLLECT DONE
