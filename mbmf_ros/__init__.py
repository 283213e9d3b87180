"""mbmf_ros: learned neural-network dynamics + MPC for legged robots (Nagabandi et al. 2017) on ROS 2.

The generated interfaces (``mbmf_ros.msg``, ``mbmf_ros.srv``) may be installed in another prefix than these
sources (a virtual environment's site-packages, or a colcon install space): extend the package path so that
both halves resolve under the one name, as catkin's devel space did.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = '0.1.0'
