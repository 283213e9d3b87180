"""dynamics_trainer: trains a dynamics model from bags on request and announces it (docs/design.md).

Service  /mbmf/train (mbmf_ros/srv/TrainModel): bags -> checkpoint. Training runs in a background thread; the
         service callback is a coroutine that waits for it without blocking the executor (other callbacks,
         a second request, the latched topic keep working). A request while one is training is refused at
         once with success=false and a message naming the running job.
Topic    /mbmf/model (mbmf_ros/msg/ModelInfo, latched): published when a model is ready (after training, and
         at start-up for `initial_checkpoint`).
Parameters (defaults: config/defaults.yaml, dynamics_trainer section)
  agent               string   agent the models are for (unknown agent: exit with the known ones)
  output              string   default checkpoint path ("" -> models/<agent>_dynamics.pt)
  epochs              int      default epochs (0: the config's)
  config              string   YAML of TrainConfig keys (optional)
  threads             int      torch threads for training (default 1; OpenMP spin-waits badly on busy cores)
  initial_checkpoint  string   a checkpoint to announce at start-up ("" none)
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.task import Future

from mbmf_ros import topics as T
from mbmf_ros.nodes.common import LATCHED, agent_of, declare_settings, run_node


class DynamicsTrainer(Node):
    def __init__(self):
        super().__init__('dynamics_trainer')
        from mbmf_ros.msg import ModelInfo
        from mbmf_ros.srv import TrainModel
        # Every parameter and its default: config/defaults.yaml (dynamics_trainer, /**).
        v = declare_settings(self, 'dynamics_trainer')
        self.spec = agent_of('dynamics_trainer', v)
        self.agent = self.spec.name
        self.output = v['output'] or f'models/{self.agent}_dynamics.pt'
        self.epochs, self.config_path, self.threads = v['epochs'], v['config'], v['threads']
        initial = v['initial_checkpoint']
        self._ModelInfo = ModelInfo
        self.version = 0
        self._lock = threading.Lock()
        self._job = None          # description of the running job
        self._cancel = False
        self.exit_code = None
        self.model_pub = self.create_publisher(ModelInfo, T.MODEL, LATCHED)
        # Reentrant: while a request's coroutine awaits its training thread, a mutually exclusive group would
        # hold back every other callback of the group (the next request included) until training ends.
        self.create_service(TrainModel, T.TRAIN, self._on_train, callback_group=ReentrantCallbackGroup())
        if initial:
            try:
                self._announce(initial)
            except (ValueError, FileNotFoundError) as e:
                raise SystemExit(f'dynamics_trainer: initial_checkpoint: {e}')
        self.get_logger().info(f'ready to train {self.agent} models on {T.TRAIN}')

    def _announce(self, path: str, metrics: dict | None = None):
        """Publish ModelInfo for the checkpoint at path (checked for this agent)."""
        from mbmf_ros.io.checkpoint import load_checkpoint
        model, meta = load_checkpoint(path, agent=self.agent, state_names=self.spec.state_names,
                                      action_names=self.spec.action_names)
        m = metrics or meta.get('metrics', {})
        h = {int(k): float(v) for k, v in (m.get('h_step') or {}).items()}
        self.version += 1
        msg = self._ModelInfo()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.checkpoint_path = str(Path(path).resolve())
        msg.version = self.version
        msg.agent = self.agent
        msg.state_names = list(model.state_names)
        msg.action_names = list(model.action_names)
        msg.transitions = int(m.get('transitions', 0))
        msg.train_loss = float(m.get('train_mse', float('nan')))
        msg.validation_loss = float(m.get('validation_mse', float('nan')))
        msg.validation_horizons = sorted(h)
        msg.validation_errors = [h[k] for k in sorted(h)]
        self.model_pub.publish(msg)
        self.get_logger().info(f'model v{self.version} ready: {msg.checkpoint_path}')
        return msg

    async def _on_train(self, request, response):
        with self._lock:
            busy = self._job
            if busy is None:
                self._job = (f'{list(request.bags)} -> {request.output or self.output} '
                             f'(started {time.strftime("%H:%M:%S")})')
        if busy is not None:
            response.success = False
            response.message = f'refused: a training job is already running: {busy}'
            self.get_logger().warning(response.message)
            return response
        done = Future(executor=self.executor)
        threading.Thread(target=self._train, args=(request, done), daemon=True, name='train').start()
        result = await done
        response.success = result['success']
        response.message = result['message']
        if result['success']:
            m = result['metrics']
            h = m['h_step']
            response.checkpoint = result['checkpoint']
            response.train_loss = float(m['train_mse'])
            response.validation_loss = float(m['validation_mse'])
            response.validation_horizons = sorted(int(k) for k in h)
            response.validation_errors = [float(h[k]) for k in sorted(h)]
        return response

    def _train(self, request, done: Future):
        """Background thread: train, write the checkpoint, publish ModelInfo, complete the future."""
        from mbmf_ros.pipeline import load_train_config, train_from_bags
        log = self.get_logger()
        try:
            if not request.bags:
                raise ValueError('request.bags is empty: name bag folders or files')
            cfg = load_train_config(self.config_path or None, threads=self.threads,
                                    epochs=request.epochs or self.epochs or None)
            out = request.output or self.output
            path, metrics, report = train_from_bags(list(request.bags), out, self.agent, cfg,
                                                    request.warm_start or None, progress=False,
                                                    log=lambda s: log.info(s),
                                                    should_stop=lambda: self._cancel)
            if metrics.get('stopped'):
                raise RuntimeError('training stopped by shutdown; checkpoint written but not announced')
            self._announce(str(path), metrics)
            result = {'success': True, 'checkpoint': str(Path(path).resolve()), 'metrics': metrics,
                      'message': f'trained on {metrics["transitions"]} transitions ({report.summary()})'}
        except Exception as e:  # every failure goes back to the caller as a message
            log.error(f'training failed: {type(e).__name__}: {e}')
            result = {'success': False, 'message': f'{type(e).__name__}: {e}'}
        with self._lock:
            self._job = None
        done.set_result(result)

    def close(self):
        self._cancel = True


def main(args=None):
    return run_node(lambda: DynamicsTrainer(), args)


if __name__ == '__main__':
    sys.exit(main())
