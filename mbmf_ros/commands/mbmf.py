"""Mb-Mf (paper Sec. V): random data -> dynamics -> MPC rollouts -> DAgger policy -> TRPO/PPO fine-tuning, against
the same learner from scratch. Resumable; progress shown; every environment step counted.

    mbmf-ros mbmf --agent swimmer --out runs/mbmf/swimmer [--learner trpo|ppo] [--steps 200000] [--batch 5000]
    mbmf-ros mbmf --report results/mbmf.md --runs runs/mbmf/swimmer runs/mbmf/half_cheetah   # table + plots

Stages, each written to --out when done (a second run skips finished stages; fine-tuning continues from its
last saved model): random.npz (D_rand, appendix A.1 moving-forward sizes), dynamics.pt (2 x 500, appendix
A.2), dagger/ (MPC rollouts with N(0, noise) on the actions, DAgger iterations, appendix B.1), then
curve_mbmf.csv and curve_scratch.csv: (environment steps, mean return of the learner's episodes) for the
fine-tuned DAgger policy and for the learner from a random initialisation. Mb-Mf's x axis starts after the
random, MPC and DAgger steps. Settings: config/mbmf.yaml; options scale them down and are recorded in
settings.json (the paper's 50 000-step TRPO batches, 30 MPC rollouts and ~1e6-1e7 steps take days here).
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

# env_steps.json stages that come before Mb-Mf's fine-tuning (all counted as its steps)
BEFORE_FINETUNING = ('random', 'aggregation', 'mpc', 'dagger', 'policy_evaluation')


def add_arguments(parser):
    parser.add_argument('--agent', choices=['swimmer', 'half_cheetah', 'hopper', 'ant'])
    parser.add_argument('--out', help='run folder (resumable)')
    parser.add_argument('--learner', choices=['trpo', 'ppo'], default='trpo')
    parser.add_argument('--steps', type=int, default=0, help='fine-tuning env steps per learner (0: 10 batches)')
    parser.add_argument('--batch', type=int, default=0, help='env steps per policy update (0: config, 50000)')
    parser.add_argument('--step-size', type=float, default=0.0, help='TRPO KL bound (0: config, 0.5)')
    parser.add_argument('--num-samples', type=int, default=0,
                        help="MPC K (0: the agent's moving-forward K, config/<agent>.yaml)")
    parser.add_argument('--horizon', type=int, default=0, help="MPC H (0: the agent's moving-forward H, config/<agent>.yaml)")
    parser.add_argument('--mpc-rollouts', type=int, default=0, help='expert rollouts (0: config)')
    parser.add_argument('--dagger-iterations', type=int, default=-1, help='(-1: config)')
    parser.add_argument('--dagger-rollouts', type=int, default=0, help='(0: config)')
    parser.add_argument('--episode-steps', type=int, default=0, help='steps per episode (0: config)')
    parser.add_argument('--random-rollouts', type=int, default=0, help='(0: config)')
    parser.add_argument('--random-steps', type=int, default=0, help='steps per random rollout (0: config)')
    parser.add_argument('--aggregation-iterations', type=int, default=-1,
                        help='Algorithm 1 data aggregation iterations before the MPC expert (-1: config)')
    parser.add_argument('--aggregation-rollouts', type=int, default=0, help='MPC rollouts per aggregation (0: config)')
    parser.add_argument('--released', action='store_true',
                        help="imitation with the authors' released code's lr 1e-3, batch 512, std 0.5")
    parser.add_argument('--std', type=float, default=0.0,
                        help="the policy's fixed std, in imitation and as the learner's initial std (0: config)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--report', help='write this markdown report (and PNG plots beside it) from --runs')
    parser.add_argument('--runs', nargs='+', default=[], help='run folders for --report')
    parser.add_argument('--threshold-fraction', type=float, default=0.9,
                        help="threshold 'best' = this x the learner alone's best (smoothed) return; threshold 'MPC' = "
                             "the expert MPC rollouts' mean return")


def _settings(args) -> dict:
    from mbmf_ros.commands.distill_follower import load_settings
    cfg = load_settings('agents')
    a = cfg['agents'][args.agent]
    learner = cfg[args.learner]
    batch = args.batch or int(learner['batch_size'])
    return {
        'agent': args.agent, 'learner': args.learner, 'seed': args.seed,
        'random_rollouts': args.random_rollouts or int(a['random_rollouts']), 'random_steps': args.random_steps or int(a['random_steps']),
        'dynamics_epochs': int(a['dynamics_epochs']),
        'episode_steps': args.episode_steps or int(a['episode_steps']),
        'mpc_rollouts': args.mpc_rollouts or int(a['mpc_rollouts']),
        'dagger_iterations': args.dagger_iterations if args.dagger_iterations >= 0 else int(a['dagger_iterations']),
        'dagger_rollouts': args.dagger_rollouts or int(a['dagger_rollouts']),
        'dagger_epochs': int(a['dagger_epochs']), 'mpc_noise_std': float(cfg['mpc_noise_std']),
        'aggregation_iterations': (args.aggregation_iterations if args.aggregation_iterations >= 0
                                   else int(a['aggregation_iterations'])),
        'aggregation_rollouts': args.aggregation_rollouts or int(a['aggregation_rollouts']),
        'num_samples': args.num_samples, 'horizon': args.horizon,
        'imitation': {**cfg['imitation'], **({'std': float(a['std'])} if 'std' in a else {}),
                      **({'lr': 1e-3, 'batch_size': 512, 'std': 0.5} if args.released else {}),
                      **({'std': args.std} if args.std else {})},
        'imitation_values': 'released code' if args.released else 'appendix B.1',
        'batch': batch, 'steps': args.steps or 10 * batch, 'discount': float(learner['discount']),
        'step_size': args.step_size or float(cfg['trpo']['step_size']),
        'ppo': cfg['ppo'],
    }


def _renamed(saved: dict) -> dict:
    """settings.json of a run made before K was called num_samples everywhere ('samples' then): same meaning,
    so such a run still resumes and reports."""
    if 'samples' in saved and 'num_samples' not in saved:
        saved = {('num_samples' if k == 'samples' else k): v for k, v in saved.items()}
    return saved


def _learner(settings: dict, env, seed: int):
    import torch
    policy_kwargs = dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh,
                         log_std_init=math.log(float(settings['imitation']['std'])))
    if settings['learner'] == 'trpo':
        from sb3_contrib import TRPO
        return TRPO('MlpPolicy', env, n_steps=settings['batch'], batch_size=min(settings['batch'], 5000),
                    gamma=settings['discount'], target_kl=settings['step_size'], policy_kwargs=policy_kwargs,
                    seed=seed, device='cpu')
    from stable_baselines3 import PPO
    ppo = settings['ppo']
    return PPO('MlpPolicy', env, n_steps=settings['batch'], batch_size=min(int(ppo['minibatch_size']), settings['batch']),
               n_epochs=int(ppo['n_epochs']), learning_rate=float(ppo['learning_rate']), gamma=settings['discount'],
               policy_kwargs=policy_kwargs, seed=seed, device='cpu')


def _random_data(spec, settings, rng_seed):
    """D_rand: uniform random actions in [-1, 1] (appendix A.1). Returns trajectories with states/actions."""
    from types import SimpleNamespace

    from mbmf_ros.sim.simulation import Simulation
    sim = Simulation(spec, max_episode_steps=settings['random_steps'], seed=rng_seed, heading_noise=False)
    rng = np.random.default_rng(rng_seed + 1)
    out = []
    for _ in range(settings['random_rollouts']):
        states, actions = [sim.reset().estimate.values], []
        while True:
            a = rng.uniform(-1, 1, spec.action_dim)
            step = sim.step(a)
            states.append(step.estimate.values)
            actions.append(a)
            if step.terminal:
                break
        out.append(SimpleNamespace(states=np.asarray(states), actions=np.asarray(actions, np.float32),
                                   state_names=spec.state_names, action_names=spec.action_names))
    return out


def _forward_episode(spec, model, planner, task, policy, noise_std, seed, episode_steps):
    """One moving-forward episode: the MPC acts (policy None, with N(0, noise_std) on its action) or the policy
    acts; the MPC labels every visited state either way (DAgger). ``task`` scores what happened (the paper's
    reward); the MPC plans with the agent's planning task (tighter termination bounds, fall penalty and height band
    where the agent has them, as ``mbrl`` and the planner node do). Returns a core.policy.Episode whose info holds
    the trajectory for the dynamics model: 'states' (T+1, S) and 'actions' (T, A) as executed."""
    from mbmf_ros.core.policy import Episode
    from mbmf_ros.core.tasks import MovingForwardTask
    from mbmf_ros.sim.gym_env import step_reward
    from mbmf_ros.sim.simulation import Simulation
    sim = Simulation(spec, max_episode_steps=episode_steps, seed=seed, heading_noise=False)
    rng = np.random.default_rng(seed + 17)
    state = np.asarray(sim.reset().estimate.values, dtype=np.float64)
    planner.reset()
    plan_task = MovingForwardTask.for_agent(spec, planning=True)
    obs, labels, rewards, states, actions = [], [], [], [state], []
    while True:
        expert = np.asarray(planner.plan(model, plan_task, state).action, dtype=np.float64)
        o = state[3:].astype(np.float32)
        action = expert + rng.normal(0.0, noise_std, expert.shape) if policy is None else policy.act(o)
        action = np.clip(action, -1.0, 1.0)
        step = sim.step(action)
        nxt = np.asarray(step.estimate.values, dtype=np.float64)
        obs.append(o)
        states.append(nxt)
        actions.append(np.asarray(action, dtype=np.float32))
        labels.append(expert.astype(np.float32))
        rewards.append(step_reward(task, state, action, nxt))
        state = nxt
        if step.terminal:
            break
    return Episode(np.asarray(obs), np.asarray(labels), np.asarray(rewards),
                   {'states': np.asarray(states), 'actions': np.asarray(actions, dtype=np.float32)})


def _save_trajectories(path: Path, trajs) -> None:
    """Trajectories (states (T+1, S), actions (T, A)) into one .npz, written atomically."""
    arrays = {}
    for i, (states, actions) in enumerate(trajs):
        arrays[f'states_{i}'], arrays[f'actions_{i}'] = states, actions
    tmp = path.with_suffix('.tmp.npz')
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_trajectories(path: Path, spec):
    from types import SimpleNamespace
    with np.load(path) as arrays:            # an NpzFile holds its file open until closed
        n = sum(1 for k in arrays.files if k.startswith('states_'))
        return [SimpleNamespace(states=arrays[f'states_{i}'], actions=arrays[f'actions_{i}'].astype(np.float32),
                                state_names=spec.state_names, action_names=spec.action_names) for i in range(n)]


class _CurveLog:
    """Appends (env_steps, mean return of the episodes finished since the last row, episodes) to a CSV."""

    def __init__(self, path: Path, offset: int):
        self.path, self.offset = path, offset
        self._cb = None

    def callback(self):
        """One callback for every learn() call: an episode can span two batches."""
        if self._cb is not None:
            return self._cb
        from stable_baselines3.common.callbacks import BaseCallback
        log = self

        class Cb(BaseCallback):
            def __init__(self):
                super().__init__()
                self.returns, self.current = [], 0.0

            def _on_step(self) -> bool:
                self.current += float(self.locals['rewards'][0])
                if self.locals['dones'][0]:
                    self.returns.append(self.current)
                    self.current = 0.0
                return True

            def _on_rollout_end(self) -> None:
                if self.returns:
                    with log.path.open('a') as f:
                        f.write(f'{log.offset + self.model.num_timesteps},{np.mean(self.returns):.4f},'
                                f'{len(self.returns)}\n')
                    self.returns = []
        self._cb = Cb()
        return self._cb


def _finetune(settings, out: Path, name: str, offset: int, init_policy=None) -> None:
    """Train the learner for settings['steps'] env steps, resumable from out/<name>.zip; curve in curve_<name>.csv."""
    from mbmf_ros.sim.gym_env import ForwardEnv
    curve, saved = out / f'curve_{name}.csv', out / f'{name}.zip'
    env = ForwardEnv(settings['agent'], settings['episode_steps'], seed=settings['seed'] + 99)
    if saved.exists():
        cls = type(_learner(settings, env, settings['seed']))
        learner = cls.load(saved, env=env, device='cpu')
    else:
        learner = _learner(settings, env, settings['seed'])
        if init_policy is not None:
            missing, unexpected = learner.policy.load_state_dict(init_policy.sb3_state_dict(), strict=False)
            if unexpected:
                raise RuntimeError(f'copying the DAgger policy into {settings["learner"]}: unexpected {unexpected}')
        curve.write_text('env_steps,mean_return,episodes\n')
    log = _CurveLog(curve, offset)
    done = learner.num_timesteps
    print(f'{name}: {done} of {settings["steps"]} fine-tuning steps done', flush=True)
    while learner.num_timesteps < settings['steps']:
        learner.learn(total_timesteps=settings['batch'], reset_num_timesteps=False, callback=log.callback(),
                      progress_bar=False)
        learner.save(saved)
        rows = curve.read_text().strip().splitlines()
        last = rows[-1].split(',') if len(rows) > 1 else ['?', 'nan']
        print(f'{name}: {learner.num_timesteps}/{settings["steps"]} steps, mean return {float(last[1]):.1f}',
              flush=True)


def run_chain(args) -> int:
    import torch
    from tqdm import tqdm

    from mbmf_ros.core.agents import get_agent
    from mbmf_ros.core.planners import make_planner
    from mbmf_ros.core.policy import GaussianPolicy, ImitationConfig, Observation, dagger
    from mbmf_ros.core.tasks import MovingForwardTask
    from mbmf_ros.core.training import TrainConfig, format_metrics, train_dynamics
    from mbmf_ros.io.checkpoint import load_checkpoint, load_policy, save_checkpoint, save_policy

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(args)
    saved = out / 'settings.json'
    if saved.exists():
        old = _renamed(json.loads(saved.read_text()))
        # more fine-tuning steps extend a run; anything else would mix two experiments in one folder
        if {k: v for k, v in old.items() if k != 'steps'} != \
                {k: v for k, v in json.loads(json.dumps(settings)).items() if k != 'steps'}:
            print(f'mbmf-ros mbmf: {saved} was made with other settings; use another --out or the same options.\n'
                  f'  saved: {old}\n  now:   {settings}', file=sys.stderr)
            return 2
    saved.write_text(json.dumps(settings, indent=2))
    # the code that made each part of the run: one line per invocation that changed commit (a resumed run may
    # span several)
    from mbmf_ros.commands.mbrl import git_commit
    commits = out / 'commits.txt'
    made_by = commits.read_text().split() if commits.exists() else []
    if not made_by or made_by[-1] != git_commit():
        with commits.open('a') as f:
            f.write(git_commit() + '\n')
    spec = get_agent(args.agent)
    steps_file = out / 'env_steps.json'
    counts = json.loads(steps_file.read_text()) if steps_file.exists() else {}

    def count(stage, n):
        counts[stage] = int(n)
        steps_file.write_text(json.dumps(counts, indent=2))

    # 1. D_rand and 2. the dynamics model
    dyn_path, rand_path = out / 'dynamics.pt', out / 'random.npz'
    n_agg = settings['aggregation_iterations']
    task = MovingForwardTask.for_agent(spec)
    K = settings['num_samples'] or int(spec.forward_planner_defaults['num_samples'])
    H = settings['horizon'] or int(spec.forward_planner_defaults['horizon'])
    trajs = None
    if not dyn_path.exists() or (n_agg and not rand_path.exists()):
        trajs = _random_data(spec, settings, args.seed)     # deterministic: a rerun makes the same D_rand
        _save_trajectories(rand_path, [(t.states, t.actions) for t in trajs])
        count('random', sum(len(t.actions) for t in trajs))
    if not dyn_path.exists():
        t0 = time.time()
        n_val = max(1, len(trajs) // 10)
        model, metrics = train_dynamics(trajs[n_val:], trajs[:n_val], TrainConfig(
            epochs=settings['dynamics_epochs'], seed=args.seed), agent=spec.name, progress=True)
        save_checkpoint(dyn_path, model, {'command': 'mbmf-ros mbmf', 'metrics': {
            k: v for k, v in metrics.items() if k != 'history'}, 'random_steps': counts['random']})
        print(f'dynamics: {format_metrics(metrics)} ({time.time() - t0:.0f} s with data)', flush=True)
    # Algorithm 1's data aggregation (appendix A.1: half_cheetah 7 x 9 rollouts of 1000 steps): a model trained
    # on random data only gets the half_cheetah stuck nose-down after ~200 steps of MPC (it predicts forward
    # motion there that does not happen), so the expert went backwards over 1000 steps; MPC rollouts of the
    # current model, added to its data (D_rand 10 %, D_rl 90 % per epoch) and retrained, teach it those states.
    expert_model = dyn_path
    if n_agg:
        adir = out / 'aggregation'
        adir.mkdir(exist_ok=True)
        done = [json.loads(x) for x in (adir / 'stages.jsonl').read_text().splitlines()] \
            if (adir / 'stages.jsonl').exists() else []
        if trajs is None and len(done) < n_agg:
            trajs = _load_trajectories(rand_path, spec)
        for i in range(len(done) + 1, n_agg + 1):
            # Each round's MPC runs on the model the round before it made (the first on the random-data model).
            before = adir / f'model_{i - 1}.pt' if i > 1 else dyn_path
            model, _ = load_checkpoint(before, agent=spec.name, state_names=spec.state_names)
            model.eval()
            rollouts = adir / f'rollouts_{i}.npz'
            if not rollouts.exists():
                planner = make_planner('random_shooting', spec.action_dim, H, K, args.seed + 100 * i)
                eps = []
                for j in tqdm(range(settings['aggregation_rollouts']), desc=f'aggregation {i}/{n_agg} MPC rollouts',
                              unit='rollout'):
                    with torch.no_grad():
                        eps.append(_forward_episode(spec, model, planner, task, None, 0.0,
                                                    args.seed * 1000 + 500 + 10 * i + j, settings['episode_steps']))
                _save_trajectories(rollouts, [(e.info['states'], e.info['actions']) for e in eps])
                returns = [float(e.rewards.sum()) for e in eps]
                (adir / f'returns_{i}.json').write_text(json.dumps(returns))
            returns = json.loads((adir / f'returns_{i}.json').read_text())
            rl = [t for k in range(1, i + 1) for t in _load_trajectories(adir / f'rollouts_{k}.npz', spec)]
            n_val = max(1, len(trajs) // 10)
            model, metrics = train_dynamics(trajs[n_val:], trajs[:n_val], TrainConfig(
                epochs=settings['dynamics_epochs'], seed=args.seed + i), rl=rl, warm_start=model, agent=spec.name,
                progress=True)
            save_checkpoint(adir / f'model_{i}.pt', model, {'command': 'mbmf-ros mbmf', 'aggregation': i})
            row = {'iteration': i, 'model': before.name,
                   'env_steps': sum(len(t.actions) for t in _load_trajectories(rollouts, spec)),
                   'mean_return': float(np.mean(returns)), 'returns': returns}
            with (adir / 'stages.jsonl').open('a') as f:
                f.write(json.dumps(row) + '\n')
            print(f'aggregation {i}: MPC returns {[round(r, 1) for r in returns]} with the model before it; '
                  f'retrained on {len(rl)} MPC rollouts + D_rand', flush=True)
            done.append(row)
        count('aggregation', sum(r['env_steps'] for r in done))
        expert_model = adir / f'model_{n_agg}.pt'
    model, _ = load_checkpoint(expert_model, agent=spec.name, state_names=spec.state_names)
    model.eval()

    # 3. MPC expert rollouts and DAgger
    ddir = out / 'dagger'
    ddir.mkdir(exist_ok=True)
    policy_path = ddir / 'policy.pt'
    stages_log = ddir / 'stages.jsonl'
    done_stages = [json.loads(x) for x in stages_log.read_text().splitlines()] if stages_log.exists() else []
    planner = make_planner('random_shooting', spec.action_dim, H, K, args.seed)
    im = settings['imitation']
    config = ImitationConfig(hidden_sizes=tuple(im['hidden_sizes']), std=float(im['std']), lr=float(im['lr']),
                             batch_size=int(im['batch_size']), epochs=settings['dagger_epochs'], seed=args.seed)
    n_iter = settings['dagger_iterations']
    if not done_stages or done_stages[-1]['iteration'] < n_iter:
        policy = GaussianPolicy(Observation('state', spec.state_names), spec.action_names, config.hidden_sizes,
                                config.std, agent=spec.name)
        data, first = None, 0
        if done_stages:
            policy, _ = load_policy(policy_path, agent=spec.name, state_names=spec.state_names)
            arrays = np.load(ddir / 'data.npz')
            data, first = (arrays['obs'], arrays['labels']), done_stages[-1]['iteration']
        total = (0 if data is not None else settings['mpc_rollouts']) + settings['dagger_rollouts'] * (n_iter - first)
        bar = tqdm(total=total, desc=f'{spec.name} MPC/DAgger rollouts (K={K}, H={H})', unit='rollout')

        def rollout(actor, seed):
            ep = _forward_episode(spec, model, planner, task, actor, settings['mpc_noise_std'], seed,
                                  settings['episode_steps'])
            bar.update(1)
            return ep

        def on_stage(stage, arrays):
            np.savez(ddir / 'data.tmp.npz', obs=arrays[0], labels=arrays[1])
            (ddir / 'data.tmp.npz').replace(ddir / 'data.npz')
            save_policy(policy_path, policy, {'stage': stage.name, 'imitation': settings['imitation_values']})
            row = {'name': stage.name, 'iteration': 0 if stage.name == 'expert' else int(stage.name[6:]),
                   'env_steps': stage.env_steps, 'mean_return': stage.mean_return, 'loss': stage.losses[-1]}
            with stages_log.open('a') as f:
                f.write(json.dumps(row) + '\n')
            tqdm.write(f'{stage.name}: {stage.env_steps} env steps, mean return of its rollouts '
                       f'{stage.mean_return:.1f}, imitation loss {stage.losses[-1]:.4f}')

        dagger(policy, rollout, config, settings['mpc_rollouts'], n_iter, settings['dagger_rollouts'],
               data=data, first_iteration=first, seed=args.seed * 1000 + 1, on_stage=on_stage)
        bar.close()
        done_stages = [json.loads(x) for x in stages_log.read_text().splitlines()]
    count('mpc', sum(s['env_steps'] for s in done_stages if s['name'] == 'expert'))
    count('dagger', sum(s['env_steps'] for s in done_stages if s['name'] != 'expert'))
    policy, _ = load_policy(policy_path, agent=spec.name, state_names=spec.state_names)
    # The DAgger policy's own return (no expert): its mean action, and sampled with its fixed std as the learner
    # starts (its first batches' return); both counted as Mb-Mf's steps.
    for key, sample_seed in (('dagger_policy_return', None), ('dagger_policy_return_sampled', args.seed + 777)):
        if key in counts:
            continue
        from mbmf_ros.sim.gym_env import ForwardEnv
        env = ForwardEnv(spec.name, settings['episode_steps'], seed=args.seed + 555)
        gen = torch.Generator().manual_seed(sample_seed) if sample_seed is not None else None
        returns = []
        for i in range(3):
            o, _ = env.reset(seed=args.seed + 555 + i)
            total, end = 0.0, False
            while not end:
                o, r, te, tr, _ = env.step(policy.act(o, gen))
                total, end = total + r, te or tr
            returns.append(total)
        counts[key] = float(np.mean(returns))
        count('policy_evaluation', counts.get('policy_evaluation', 0) + env.env_steps)
        print(f'DAgger policy ({"sampled, std " + str(policy.std) if gen else "mean action"}): mean return '
              f'{counts[key]:.1f} over 3 episodes', flush=True)

    # 4. fine-tuning from the DAgger policy, and 5. the same learner from scratch
    offset = sum(v for k, v in counts.items() if k in BEFORE_FINETUNING)
    _finetune(settings, out, 'mbmf', offset, init_policy=policy)
    _finetune(settings, out, 'scratch', 0)
    count('finetune', settings['steps'])
    print(f'done: {out} (environment steps before fine-tuning: {offset})')
    return 0


def _curve(path: Path):
    rows = [r for r in csv.DictReader(path.open())] if path.exists() else []
    return np.array([[float(r['env_steps']), float(r['mean_return'])] for r in rows]).reshape(-1, 2)


def _smooth(y, n=3):
    return np.array([np.mean(y[max(0, i - n + 1):i + 1]) for i in range(len(y))])


def _tail(curve, n=5) -> float:
    return float(np.mean(curve[-n:, 1])) if len(curve) else float('nan')


KEY_STEPS = (20_000, 50_000, 100_000, 150_000, 200_000)    # where the report reads the curves


def _at(curve, n) -> str:
    """The smoothed return of the last batch at or before n env steps, '-' before the first or past the end."""
    if not len(curve) or n < curve[0, 0] or n > curve[-1, 0] + (curve[-1, 0] - curve[-2, 0] if len(curve) > 1 else 0):
        return '-'
    return f'{_smooth(curve[:, 1])[np.flatnonzero(curve[:, 0] <= n)[-1]]:.1f}'


def steps_to(curve, threshold):
    """First environment step count at which the smoothed return reaches threshold, or None."""
    if not len(curve):
        return None
    hit = np.flatnonzero(_smooth(curve[:, 1]) >= threshold)
    return float(curve[hit[0], 0]) if len(hit) else None


def ratio(scratch, mbmf, threshold) -> tuple:
    """(steps of the learner alone to threshold, Mb-Mf's, ratio text, ratio value or None) on curves (N, 2) of
    (env steps, return). A learner alone that never gets there gives a lower bound (its last step count / Mb-Mf's,
    '>'); Mb-Mf never getting there gives an upper bound ('<'); neither: 'n/a'."""
    a, b = steps_to(scratch, threshold), steps_to(mbmf, threshold)
    if a and b:
        return a, b, f'{a / b:.2f}x', a / b
    if b and len(scratch):
        return a, b, f'> {scratch[-1, 0] / b:.2f}x (alone: not reached in {scratch[-1, 0]:.0f})', None
    if a and len(mbmf):
        return a, b, f'< {a / mbmf[-1, 0]:.2f}x (Mb-Mf: not reached in {mbmf[-1, 0]:.0f})', None
    return a, b, 'n/a (neither reached it)', None


def _run_summary(run: Path, fraction: float) -> dict:
    """What the report needs of one run folder."""
    from mbmf_ros.core.agents import get_agent
    s = _renamed(json.loads((run / 'settings.json').read_text()))
    c = json.loads((run / 'env_steps.json').read_text()) if (run / 'env_steps.json').exists() else {}
    stages = [json.loads(x) for x in (run / 'dagger' / 'stages.jsonl').read_text().splitlines()] \
        if (run / 'dagger' / 'stages.jsonl').exists() else []
    agg = [json.loads(x) for x in (run / 'aggregation' / 'stages.jsonl').read_text().splitlines()] \
        if (run / 'aggregation' / 'stages.jsonl').exists() else []
    expert = [x for x in stages if x['name'] == 'expert']
    mbmf, scratch = _curve(run / 'curve_mbmf.csv'), _curve(run / 'curve_scratch.csv')
    best = float(np.max(_smooth(scratch[:, 1]))) if len(scratch) else float('nan')
    spec = get_agent(s['agent'])
    # the model-based stages as points of a curve: (env steps so far, mean return of that stage's MPC rollouts)
    mb_points, steps = [], c.get('random', 0)
    for row in agg:
        mb_points.append((steps, row['mean_return']))
        steps += row['env_steps']
    if expert:
        mb_points.append((steps, expert[0]['mean_return']))
    return {'run': run, 'settings': s, 'counts': c, 'mbmf': mbmf, 'scratch': scratch, 'best': best,
            'expert_return': expert[0]['mean_return'] if expert else float('nan'), 'mb_points': mb_points,
            'before': sum(c.get(k, 0) for k in BEFORE_FINETUNING),
            'K': s['num_samples'] or spec.forward_planner_defaults['num_samples'],
            'H': s['horizon'] or spec.forward_planner_defaults['horizon'],
            'thresholds': {'mpc': expert[0]['mean_return'] if expert else float('nan'),
                           'best': fraction * best if best > 0 else best / fraction}}


def write_report(report: str, runs: list, fraction: float, command: str = '') -> int:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from mbmf_ros.commands.mbrl import git_commit
    report = Path(report)
    report.parent.mkdir(parents=True, exist_ok=True)
    summaries = [_run_summary(Path(r), fraction) for r in runs]
    lines = ['# Mb-Mf: model-based initialisation of a model-free learner (paper Sec. V, Fig. 8)', '',
             f'Written at commit `{git_commit()}` by `{command or "mbmf-ros mbmf --report"}`; each run\'s '
             'settings are in its settings.json (the columns below name the ones that differ from the paper). '
             'Reward: the agent\'s moving-forward reward (appendix C) on the true states. Return = mean return '
             'of the learner\'s training episodes in each batch (sampled with its exploration std, as rllab\'s '
             'curves). Environment steps of Mb-Mf include the random data, the data-aggregation MPC rollouts, '
             'the expert MPC rollouts, the DAgger rollouts and the DAgger policy\'s evaluation episodes.', '',
             '**Thresholds.** The paper states its gains as "3-5x" (Fig. 8) and, for the swimmer, that Mb-Mf '
             '"allows TRPO to achieve its max performance 3x faster than for TRPO alone" (Fig. 7): a level on '
             'the curves, reached by both. Two levels are used here, both stated: **MPC** = the mean return of '
             'the expert MPC rollouts (the level the model-based part reaches, where Mb-Mf\'s curve starts in '
             f'Fig. 8), and **best** = {fraction:g} x the best smoothed (3 batches) return TRPO alone reached '
             'within this run\'s budget (the paper\'s "max performance", as far as this budget shows it). '
             'Steps to a threshold: the first batch at which the 3-batch smoothed return reaches it. Ratio = '
             'steps of the learner alone / steps of Mb-Mf (all Mb-Mf\'s steps counted); ">" = the learner alone '
             'had not reached it when its run ended (a lower bound).', '',
             '| agent | learner | seed | batch | fine-tuning steps | KL step, std, imitation | steps before '
             'fine-tuning (random + aggregation + MPC + DAgger + evaluation) | MPC K, H | MPC return (aggregation '
             'iterations -> expert) | DAgger policy return: mean action / sampled | threshold MPC: steps alone / '
             'Mb-Mf, ratio | threshold best: steps alone / Mb-Mf, ratio | mean return of the last 5 batches: '
             'alone / Mb-Mf |', '|' + '---|' * 13]
    per_agent: dict = {}
    runs_made: list = []
    for r in summaries:
        s, c = r['settings'], r['counts']
        cells = []
        for key in ('mpc', 'best'):
            th = r['thresholds'][key]
            a, b, text, value = ratio(r['scratch'], r['mbmf'], th)
            per_agent.setdefault((s['agent'], s['learner'], key), []).append((s['seed'], th, text, value))
            cells.append(f'{th:.1f}: {a and f"{a:.0f}" or "-"} / {b and f"{b:.0f}" or "-"}, {text}')
        mb = ' -> '.join(f'{y:.1f}' for _, y in r['mb_points'])
        commits = (r['run'] / 'commits.txt').read_text().split() if (r['run'] / 'commits.txt').exists() else ['?']
        runs_made.append(f"{r['run']}: commit(s) {', '.join(f'`{x}`' for x in commits)}")
        lines.append(
            f"| {s['agent']} | {s['learner']} | {s['seed']} | {s['batch']} | {s['steps']} | "
            f"{s['step_size']:g}, {s['imitation']['std']:g}, {s.get('imitation_values', '')} | {r['before']} "
            f"({c.get('random', 0)} + {c.get('aggregation', 0)} + {c.get('mpc', 0)} + {c.get('dagger', 0)} + "
            f"{c.get('policy_evaluation', 0)}) | {r['K']}, {r['H']} | {mb} | "
            f"{c.get('dagger_policy_return', float('nan')):.1f} / {c.get('dagger_policy_return_sampled', float('nan')):.1f}"
            f" | {cells[0]} | {cells[1]} | {_tail(r['scratch']):.1f} / {_tail(r['mbmf']):.1f} |")
    lines += ['', 'Runs: ' + '; '.join(runs_made) + '.']
    lines += ['', '## Ratios per agent (steps of the learner alone / steps of Mb-Mf)', '',
              '| agent | learner | threshold | per seed | mean of the measured ratios |', '|---|---|---|---|---|']
    for (agent, learner, key), rows in per_agent.items():
        values = [v for *_, v in rows if v is not None]
        mean = f'{np.mean(values):.2f}x over {len(values)} of {len(rows)} seeds' if values else 'none measured'
        lines.append(f"| {agent} | {learner} | {key} | "
                     + '; '.join(f'seed {seed} ({th:.1f}): {text}' for seed, th, text, _ in rows) + f' | {mean} |')
    lines += ['', '## Key points of the curves (3-batch smoothed return of the last batch at or before N environment '
              'steps; Mb-Mf counts all its steps): alone / Mb-Mf', '',
              '| agent | seed | ' + ' | '.join(f'{n:,}' for n in KEY_STEPS) + ' |', '|---|---|' + '---|' * len(KEY_STEPS)]
    for r in summaries:
        lines.append(f"| {r['settings']['agent']} | {r['settings']['seed']} | "
                     + ' | '.join(f'{_at(r["scratch"], n)} / {_at(r["mbmf"], n)}' for n in KEY_STEPS) + ' |')
    images = []
    agents = sorted({(r['settings']['agent'], r['settings']['learner']) for r in summaries})
    for agent, learner in agents:
        group = [r for r in summaries if (r['settings']['agent'], r['settings']['learner']) == (agent, learner)]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, r in enumerate(group):
            style = ['-', '--', ':', '-.'][i % 4]
            seed = r['settings']['seed']
            if len(r['scratch']):
                ax.plot(r['scratch'][:, 0], _smooth(r['scratch'][:, 1]), color='tab:red', ls=style,
                        label=f'{learner.upper()} alone, seed {seed}')
            if len(r['mbmf']):
                ax.plot(r['mbmf'][:, 0], _smooth(r['mbmf'][:, 1]), color='tab:green', ls=style,
                        label=f'Mb-Mf ({learner.upper()} from the DAgger policy), seed {seed}')
            if r['mb_points']:
                xs, ys = zip(*r['mb_points'])
                ax.plot(xs, ys, color='tab:blue', ls=style, marker='o', ms=4,
                        label=f'model-based MPC (aggregation, expert), seed {seed}')
            if r['before']:
                ax.scatter([r['before']], [r['counts'].get('dagger_policy_return', np.nan)], color='tab:purple',
                           marker='s', zorder=3, label=f'DAgger policy (mean action), seed {seed}')
                ax.scatter([r['before']], [r['counts'].get('dagger_policy_return_sampled', np.nan)],
                           facecolors='none', edgecolors='tab:purple', marker='s', zorder=3,
                           label=f'DAgger policy (sampled at its std), seed {seed}')
            if np.isfinite(r['thresholds']['mpc']):
                ax.axhline(r['thresholds']['mpc'], color='gray', ls=style, lw=0.8)
        ax.set_xscale('log')
        ax.set_xlabel('environment steps (log)')
        ax.set_ylabel('mean episode return (3-batch smoothed)')
        ax.set_title(f'{agent}: Mb-Mf vs {learner.upper()} alone (gray: the MPC threshold)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        fig.tight_layout()
        png = report.parent / f'mbmf_{agent}_{learner}.png'
        fig.savefig(png, dpi=110)
        plt.close(fig)
        images.append(f'![{agent}]({png.name})')
    lines += [''] + images
    report.write_text('\n'.join(lines) + '\n')
    print(report.read_text())
    return 0


def run(args) -> int:
    if args.report:
        if not args.runs:
            print('mbmf-ros mbmf: --report needs --runs FOLDER...', file=sys.stderr)
            return 2
        return write_report(args.report, args.runs, args.threshold_fraction,
                            f'mbmf-ros mbmf --report {args.report} --runs {" ".join(args.runs)} '
                            f'--threshold-fraction {args.threshold_fraction:g}')
    if not args.agent or not args.out:
        print('mbmf-ros mbmf: --agent and --out are needed (or --report with --runs)', file=sys.stderr)
        return 2
    return run_chain(args)
