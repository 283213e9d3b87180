"""Topic, service and frame names of the mbmf_ros graph (DESIGN §3). Nodes take them as defaults and
users remap them as with any ROS 2 node."""

# Sensors, identical for mujoco_bridge and hardware_bridge.
CLOCK = '/clock'
ODOM = '/odom'                    # nav_msgs/Odometry (simulator ground truth; wheel/leg odometry on hardware)
JOINT_STATES = '/joint_states'    # sensor_msgs/JointState: motor crank angles and speeds
IMU = '/imu'                      # sensor_msgs/Imu: gyro, accelerometer, orientation
MOCAP_POSE = '/mocap/pose'        # geometry_msgs/PoseStamped from motion capture
BATTERY = '/battery'              # sensor_msgs/BatteryState (hardware_bridge)
DIAGNOSTICS = '/diagnostics'      # diagnostic_msgs/DiagnosticArray: serial link health (hardware_bridge, emulator)

# The learning / control loop.
STATE = '/mbmf/state'             # mbmf_ros/AgentState
ACTION = '/mbmf/action'           # mbmf_ros/ActionCommand
EPISODE = '/mbmf/episode'         # mbmf_ros/AgentState with only episode/step/terminal/flags: the bridge's
                                  # episode bookkeeping for the estimator (sensors carry no episode)
MODEL = '/mbmf/model'             # mbmf_ros/ModelInfo, latched
WAYPOINTS = '/waypoints'          # nav_msgs/Path, the user's input
REFERENCE = '/mbmf/reference'     # nav_msgs/Path, the accepted path, latched
TRACKING = '/mbmf/tracking'       # mbmf_ros/TrackingStatus
MPC_STATUS = '/mbmf/mpc_status'   # mbmf_ros/MpcStatus
PREDICTED_PATH = '/mbmf/predicted_path'  # nav_msgs/Path of the chosen plan, for RViz/Foxglove

RESET = '/mbmf/reset'             # mbmf_ros/srv/ResetSim
TRAIN = '/mbmf/train'             # mbmf_ros/srv/TrainModel
EMULATOR_RESET = '/emulator/reset'    # mbmf_ros/srv/ResetSim: the operator puts the emulated robot back
EMULATOR_UNPLUG = '/emulator/unplug'  # std_srvs/Trigger: the emulated robot's serial link vanishes for unplug_s

WORLD_FRAME = 'odom'
BASE_FRAME = 'base_link'
