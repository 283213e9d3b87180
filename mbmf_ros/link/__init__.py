"""The link between a robot and its workstation: network namespaces and a degrading relay (no ROS)."""
