"""Training from bags: the `train`/`plot-model` commands and the dynamics_trainer node over DDS."""
import numpy as np
import pytest
import torch
from rosbags.rosbag2 import StoragePlugin, Writer

from mbmf_ros.cli import main as cli
from mbmf_ros.core.agents import get_agent
from mbmf_ros.io.bags import package_typestore
from mbmf_ros.io.checkpoint import load_checkpoint, save_checkpoint

torch.set_num_threads(1)
SPEC = get_agent('hexapod')


def synthetic_hexapod_bag(path, episodes=4, T=100, seed=0, agent='hexapod', with_actions=True):
    """A bag in the hexapod's state layout with made-up smooth dynamics (the layout is what matters here):
    body-frame forward/turn speeds follow the two motors, the other elements relax towards tanh(W a)."""
    rng = np.random.default_rng(seed)
    ts = package_typestore()
    Ty = ts.types
    S = SPEC.state_dim
    W = np.random.default_rng(42).normal(size=(S - 3, 2))
    w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    w.open()
    cs = w.add_connection('/mbmf/state', 'mbmf_ros/msg/AgentState', typestore=ts)
    ca = w.add_connection('/mbmf/action', 'mbmf_ros/msg/ActionCommand', typestore=ts) if with_actions else None
    ns = 10**9
    for ep in range(episodes):
        s = np.zeros(S)
        s[2] = rng.uniform(-np.pi, np.pi)
        for step in range(T + 1):
            hdr = Ty['std_msgs/msg/Header'](stamp=Ty['builtin_interfaces/msg/Time'](sec=ns // 10**9,
                                                                                   nanosec=ns % 10**9),
                                            frame_id='odom')
            w.write(cs, ns, ts.serialize_cdr(Ty['mbmf_ros/msg/AgentState'](
                header=hdr, agent=agent, names=list(SPEC.state_names), values=s.copy(), episode=ep, step=step,
                terminal=step == T, valid=True, flags=[]), 'mbmf_ros/msg/AgentState'))
            if step < T:
                a = rng.uniform(-1, 1, 2).astype(np.float32)
                if with_actions:
                    w.write(ca, ns, ts.serialize_cdr(Ty['mbmf_ros/msg/ActionCommand'](
                        header=hdr, values=a, step=step, source='random'), 'mbmf_ros/msg/ActionCommand'))
                v, om = 0.3 * (a[0] + a[1]), 2.0 * (a[1] - a[0])
                yaw = s[2] + om * 0.05
                s = s.copy()
                s[0] += v * np.cos(yaw) * 0.05
                s[1] += v * np.sin(yaw) * 0.05
                s[2] = (yaw + np.pi) % (2 * np.pi) - np.pi
                s[3:] = 0.8 * s[3:] + 0.2 * np.tanh(W @ a)
            ns += 50_000_000
    w.close()
    return path


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    d = tmp_path_factory.mktemp('bags')
    for i in range(3):
        synthetic_hexapod_bag(d / f'rand_{i}', seed=i)
    return d


def test_train_and_plot_commands(bags, tmp_path, capsys):
    out = tmp_path / 'm.pt'
    rc = cli(['train', '--agent', 'hexapod', '--bags', str(bags), '--out', str(out), '--epochs', '60',
              '--hidden', '64', '64', '--threads', '1', '--quiet'])
    assert rc == 0, capsys.readouterr().err
    model, meta = load_checkpoint(out, agent='hexapod', state_names=SPEC.state_names,
                                  action_names=SPEC.action_names)
    assert model.hidden_sizes == (64, 64) and meta['metrics']['transitions'] > 0
    assert len(meta['bags']) == 3 and all(b['hash'].startswith('sha256:') for b in meta['bags'])
    h = {int(k): v for k, v in meta['metrics']['h_step'].items()}
    assert sorted(h) == [1, 5, 10, 20, 50] and h[1] < h[50]
    pos = {int(k): v for k, v in meta['metrics']['h_step_position_m'].items()}
    assert sorted(pos) == [1, 5, 10, 20, 50] and 0 < pos[1] < pos[50]
    assert meta['metrics']['validation_mse'] < 0.2  # learnable smooth system: far below the trivial 1.0
    # warm start continues from the checkpoint
    out2 = tmp_path / 'm2.pt'
    assert cli(['train', '--agent', 'hexapod', '--bags', str(bags / 'rand_0'), '--out', str(out2),
                '--epochs', '1', '--warm-start', str(out), '--threads', '1', '--quiet']) == 0
    assert load_checkpoint(out2)[1]['warm_start'] == str(out.resolve())
    png = tmp_path / 'fig5.png'
    assert cli(['plot-model', '--model', str(out), '--bags', str(bags / 'rand_2'), '--out', str(png),
                '--elements', 'x', 'y', 'yaw', 'z', 'vx']) == 0
    assert png.stat().st_size > 10000 and png.read_bytes()[:4] == b'\x89PNG'


def test_bad_input_is_named(bags, tmp_path, capsys):
    out = tmp_path / 'm.pt'
    assert cli(['train', '--agent', 'robodog', '--bags', str(bags), '--out', str(out)]) == 1
    assert "unknown agent 'robodog'" in capsys.readouterr().err
    # bags of another agent's layout
    assert cli(['train', '--agent', 'ant', '--bags', str(bags), '--out', str(out), '--quiet']) == 1
    assert "state of agent 'hexapod', expected agent 'ant'" in capsys.readouterr().err
    # a bag without the action topic: the error lists what was found
    synthetic_hexapod_bag(tmp_path / 'noact', episodes=1, T=5, with_actions=False)
    assert cli(['train', '--agent', 'hexapod', '--bags', str(tmp_path / 'noact'), '--out', str(out)]) == 1
    assert 'topics found: /mbmf/state [mbmf_ros/msg/AgentState]' in capsys.readouterr().err
    # a warm start made for another agent
    from mbmf_ros.core.dynamics import DynamicsModel
    ant = get_agent('ant')
    save_checkpoint(tmp_path / 'ant.pt', DynamicsModel(ant.state_names, ant.action_names, (8,), agent='ant'))
    assert cli(['train', '--agent', 'hexapod', '--bags', str(bags), '--out', str(out), '--warm-start',
                str(tmp_path / 'ant.pt'), '--quiet']) == 1
    err = capsys.readouterr().err
    assert "agent 'ant' (expected 'hexapod')" in err and 'ant.pt' in err
    assert not out.exists()


def test_trainer_node_service_background_refusal_and_latched_model(bags, ros, procs, tmp_path):
    from mbmf_ros.msg import ModelInfo
    from mbmf_ros.nodes.common import LATCHED
    from mbmf_ros.srv import TrainModel
    cfg = tmp_path / 'cfg.yaml'
    cfg.write_text('dynamics:\n  hidden_sizes: [128, 128]\n  epochs: 300\n')
    procs.node('dynamics_trainer', params={'agent': 'hexapod', 'output': str(tmp_path / 'default.pt'),
                                           'config': str(cfg), 'threads': 1})
    client = ros.node.create_client(TrainModel, '/mbmf/train')
    ros.wait_for_service(client, timeout=30)
    models = ros.collect(ModelInfo, '/mbmf/model', LATCHED)
    first = client.call_async(TrainModel.Request(bags=[str(bags)], output=str(tmp_path / 'a.pt')))
    second = client.call_async(TrainModel.Request(bags=[str(bags)], output=str(tmp_path / 'b.pt')))
    # the refusal comes back while the first job is still training: callbacks are not blocked
    ros.spin_until(second.done, 20, 'the refusal of the second request')
    assert not first.done(), (first.result(), second.result(), procs.output('dynamics_trainer'))
    r2 = second.result()
    assert not r2.success and 'already running' in r2.message and 'a.pt' in r2.message
    ros.spin_until(first.done, 120, 'the first training job')
    r1 = first.result()
    assert r1.success, r1.message + procs.output('dynamics_trainer')
    assert r1.checkpoint == str((tmp_path / 'a.pt').resolve()) and not (tmp_path / 'b.pt').exists()
    assert list(r1.validation_horizons) == [1, 5, 10, 20, 50] and r1.validation_loss < 0.5
    ros.spin_until(lambda: models, 10, 'ModelInfo on /mbmf/model')
    info = models[-1]
    assert info.checkpoint_path == r1.checkpoint and info.agent == 'hexapod' and info.version == 1
    assert tuple(info.state_names) == SPEC.state_names and info.transitions > 0
    # latched: a subscriber that joins later still gets it
    late = ros.collect(ModelInfo, '/mbmf/model', LATCHED)
    ros.spin_until(lambda: late, 10, 'the latched ModelInfo for a late subscriber')
    # a bad request is a failed reply with the reason, and the node keeps serving
    bad = ros.call(client, TrainModel.Request(bags=[str(tmp_path / 'missing')]), timeout=30)
    assert not bad.success and 'does not exist' in bad.message
