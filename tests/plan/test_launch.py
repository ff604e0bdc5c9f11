"""The launch as data (launcher.plan.launch) and `train --dry-run`: argv and env for each topology, no shell."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.plan.launch import PACKAGE_ROOT, REROUTING_SWITCHES, LaunchSpec, build_launch, describe
from launcher.plan.topology import Topology, first_slurm_host

from support.cli import cli_env, run_main, unused_port

PY = "/opt/py/bin/python"
OUT = Path("/runs/demo")
ARGS = OUT / "dpo-launch" / "resolved_config.json"
WORKER = ["-m", "launcher.worker", "--args-file", str(ARGS)]
TEE = ["--log_dir", str(OUT / "dpo-launch" / "logs" / "torchrun"), "--tee", "3"]


def launch(topology: Topology, env: dict | None = None, **kwargs) -> LaunchSpec:
    return build_launch(topology, ARGS, OUT, PY, env or {"PATH": "/usr/bin"}, **kwargs)


def test_one_process_runs_the_worker_directly_without_torchrun():
    spec = launch(Topology())
    assert spec.argv == [PY, *WORKER]
    assert spec.distributed is False


def test_several_processes_on_one_node_go_through_the_interpreters_own_torchrun_behind_the_quiet_wrapper():
    spec = launch(Topology(nproc_per_node=2, master_port=31000))
    assert spec.argv == [PY, "-m", "launcher.run.torchrun_quiet", "--nnodes", "1", "--nproc_per_node", "2",
                         "--node_rank", "0", "--master_addr", "127.0.0.1", "--master_port", "31000", *TEE, *WORKER]


def test_each_node_of_a_multi_node_launch_gets_its_own_node_rank():
    topology = Topology(nnodes=2, nproc_per_node=4, master_addr="10.0.0.5", master_port=29400)
    argvs = [launch(topology.for_node(rank)).argv for rank in range(2)]
    assert [argv[argv.index("--node_rank") + 1] for argv in argvs] == ["0", "1"]
    assert all(argv[argv.index("--master_addr") + 1] == "10.0.0.5" for argv in argvs)
    assert all(argv[argv.index("--nnodes") + 1] == "2" for argv in argvs)


def test_an_elastic_launch_uses_the_rendezvous_instead_of_a_static_master():
    topology = Topology(nnodes=2, nproc_per_node=1, master_addr="head", master_port=29400, rdzv_backend="c10d",
                        rdzv_id="job7")
    spec = launch(topology)
    assert spec.argv[3:11] == ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                               "--rdzv_id", "job7"]
    assert spec.argv[11:13] == ["--rdzv_endpoint", "head:29400"]
    assert "--node_rank" not in spec.argv and "--master_addr" not in spec.argv


def test_deepspeed_on_one_process_is_still_launched_through_torchrun():
    assert launch(Topology(), force_torchrun=True).argv[1:3] == ["-m", "launcher.run.torchrun_quiet"]


def test_the_environment_routes_tensorboard_and_threads_and_clears_llamafactorys_rerouting_switches():
    base = {"PATH": "/usr/bin", "USE_V1": "1", "USE_RAY": "1", "PYTHONPATH": "/elsewhere"}
    spec = launch(Topology(), base)
    assert spec.env["TENSORBOARD_LOGGING_DIR"] == str(OUT / "tensorboard")
    assert spec.env["OMP_NUM_THREADS"] == "1"
    assert spec.env["PYTHONPATH"] == f"{PACKAGE_ROOT}:/elsewhere"
    assert spec.env["PATH"] == "/usr/bin"
    assert not set(REROUTING_SWITCHES) & set(spec.env)
    assert spec.env_unset == ("USE_V1", "USE_RAY")


def test_a_users_thread_count_is_kept_and_cuda_launches_do_not_set_one():
    assert launch(Topology(), {"OMP_NUM_THREADS": "4"}).env["OMP_NUM_THREADS"] == "4"
    assert "OMP_NUM_THREADS" not in launch(Topology(), {}, device="cuda").env


def test_distributed_ranks_prefix_their_lines_with_the_global_rank():
    assert launch(Topology(nproc_per_node=2)).env["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"] == "[rank${rank}]: "


def test_torchrun_gives_ranks_55_seconds_to_save_after_a_signal_unless_the_user_chose_a_timeout():
    # 5 s inside the supervisor's 60 s grace (launcher.run.supervise.GRACE_SECONDS), so torchrun reports first
    assert launch(Topology(nproc_per_node=2)).env_set["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] == "55"
    chosen = launch(Topology(nproc_per_node=2), {"TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "10"})
    assert "TORCH_ELASTIC_SHUTDOWN_TIMEOUT" not in chosen.env_set
    assert chosen.env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] == "10"
    assert "TORCH_ELASTIC_SHUTDOWN_TIMEOUT" not in launch(Topology()).env  # no torchrun, nothing to time out


def test_paths_with_spaces_and_shell_syntax_stay_single_argv_elements():
    out = Path("/tmp/my runs/x; rm -rf ~")
    args = out / "dpo-launch" / "resolved_config.json"
    spec = build_launch(Topology(nproc_per_node=2), args, out, "/my python/bin/python", {})
    assert spec.argv[0] == "/my python/bin/python"
    assert spec.argv[-1] == str(args)
    assert str(out / "dpo-launch" / "logs" / "torchrun") in spec.argv
    assert spec.env["TENSORBOARD_LOGGING_DIR"] == "/tmp/my runs/x; rm -rf ~/tensorboard"


def test_describe_quotes_for_display_what_the_argv_keeps_as_elements():
    spec = build_launch(Topology(), Path("/a b/args.json"), Path("/a b"), "python", {"USE_KT": "1"})
    assert describe(spec).splitlines() == [
        "environment:",
        "  OMP_NUM_THREADS=1",
        f"  PYTHONPATH={PACKAGE_ROOT}",
        "  PYTHONUNBUFFERED=1",
        "  TENSORBOARD_LOGGING_DIR='/a b/tensorboard'",
        "  unset USE_KT",
        "command:",
        "  python -m launcher.worker --args-file '/a b/args.json'",
    ]


def test_slurm_variables_give_nodes_rank_gpus_and_the_first_host_as_master():
    env = {"SLURM_JOB_ID": "4242", "SLURM_NNODES": "3", "SLURM_NODEID": "2", "SLURM_NTASKS_PER_NODE": "1",
           "SLURM_GPUS_ON_NODE": "8", "SLURM_JOB_NODELIST": "gpu[07-09],cpu1"}
    assert Topology.from_slurm(env) == Topology(nnodes=3, node_rank=2, nproc_per_node=8, master_addr="gpu07",
                                                master_port=24242)


def test_slurm_without_gpus_runs_one_process_per_task_and_outside_slurm_there_is_no_topology():
    env = {"SLURM_JOB_ID": "1", "SLURM_NNODES": "2", "SLURM_NODEID": "0", "SLURM_NTASKS_PER_NODE": "2(x2)",
           "SLURM_JOB_NODELIST": "node1,node2"}
    assert Topology.from_slurm(env).nproc_per_node == 2
    assert Topology.from_slurm(env).master_addr == "node1"
    assert Topology.from_slurm({"PATH": "/usr/bin"}) is None


@pytest.mark.parametrize("nodelist, first", [("a1", "a1"), ("n[1-4]", "n1"), ("n[001,007]-ib", "n001-ib"),
                                             ("x[3],y[1-2]", "x3"), ("", None)])
def test_the_first_slurm_host_is_expanded_from_compressed_node_lists(nodelist, first):
    assert first_slurm_host(nodelist) == first


def test_impossible_topologies_are_described_for_the_user():
    assert Topology(nnodes=2, node_rank=2, nproc_per_node=0).problems() == [
        "--nproc-per-node must be at least 1 but got 0",
        "--node-rank must be in 0..1 for --nnodes 2 but got 2",
    ]


@pytest.mark.subprocess
def test_torch_distributed_run_accepts_every_option_build_launch_uses():
    """The argv after the wrapper module is parsed by the installed torchrun's own parser, so a renamed option
    fails here (launcher.run.torchrun_quiet passes it to torch.distributed.run's main unchanged)."""
    spec = launch(Topology(nnodes=2, nproc_per_node=2, master_port=31000))
    assert spec.argv[1:3] == ["-m", "launcher.run.torchrun_quiet"]
    probe = ("import sys; from torch.distributed.run import get_args_parser; "
             "a = get_args_parser().parse_args(sys.argv[1:]); "
             "print(a.nnodes, a.nproc_per_node, a.node_rank, a.master_port, a.module, a.tee, a.training_script, "
             "a.training_script_args)")
    out = subprocess.run([sys.executable, "-c", probe, *spec.argv[3:]], capture_output=True, text=True, check=True)
    assert out.stdout.split(None, 6) == ["2", "2", "0", "31000", "True", "3",
                                         f"launcher.worker ['--args-file', '{ARGS}']\n"]


CHILD = """import signal, sys, time
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))  # the rank itself ends quietly; torchrun is under test
open(sys.argv[1], "w").close()
time.sleep(120)
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_the_torchrun_wrapper_ends_a_signalled_launch_with_128_plus_the_signal_and_no_traceback(tmp_path, sig, code):
    (tmp_path / "child.py").write_text(CHILD)
    ready = tmp_path / "ready"
    argv = [sys.executable, "-m", "launcher.run.torchrun_quiet", "--nproc_per_node", "1", "--master_port",
            str(unused_port()), str(tmp_path / "child.py"), str(ready)]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 120
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    assert ready.exists(), output
    assert proc.returncode == code, output
    assert f"Received {int(sig)} death signal, shutting down workers" in output  # torchrun's own log line stays
    assert "Traceback" not in output and "SignalException" not in output


# --- through the CLI ---------------------------------------------------------------------------------------

def test_dry_run_prints_the_command_and_environment_and_writes_nothing(planned_workspace):
    ws = planned_workspace
    env = {k: v for k, v in cli_env().items() if k != "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"}
    result = run_main("train", ws.config, "--dry-run", "--nproc-per-node", "2", "--master-port", "29999", cwd=ws.root,
                 env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  TORCH_ELASTIC_SHUTDOWN_TIMEOUT=55" in lines
    assert lines[lines.index("command:") + 1] == "  " + shlex.join([
        sys.executable, "-m", "launcher.run.torchrun_quiet", "--nnodes", "1", "--nproc_per_node", "2",
        "--node_rank", "0",
        "--master_addr", "127.0.0.1", "--master_port", "29999", "--log_dir", str(ws.out / "dpo-launch/logs/torchrun"),
        "--tee", "3", "-m", "launcher.worker", "--args-file", str(ws.out / "dpo-launch/resolved_config.json")])
    assert f"  TENSORBOARD_LOGGING_DIR={shlex.quote(str(ws.out / 'tensorboard'))}" in lines
    assert not ws.out.exists()


def test_a_shell_command_in_output_dir_is_just_a_directory_name(planned_workspace):
    ws = planned_workspace
    result = run_main("train", ws.config, "output_dir=x; rm -rf ~", "--dry-run", cwd=ws.root)
    assert result.returncode == 0, result.stderr
    args_file = ws.root / "x; rm -rf ~" / "dpo-launch" / "resolved_config.json"
    assert result.stdout.splitlines()[-1] == "  " + shlex.join(
        [sys.executable, "-m", "launcher.worker", "--args-file", str(args_file)])
    assert not (ws.root / "x; rm -rf ~").exists()


def test_inside_a_slurm_allocation_the_launch_follows_slurms_nodes(planned_workspace):
    ws = planned_workspace
    slurm = {"SLURM_JOB_ID": "77", "SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_NTASKS_PER_NODE": "1",
             "SLURM_JOB_NODELIST": "node[3-4]"}
    result = run_main("train", ws.config, "--dry-run", cwd=ws.root, env=cli_env(**slurm))
    assert result.returncode == 0, result.stderr
    command = result.stdout.splitlines()[-1].split()
    assert command[3:15] == ["--nnodes", "2", "--nproc_per_node", "1", "--node_rank", "1", "--master_addr", "node3",
                             "--master_port", "20077", "--log_dir", str(ws.out / "dpo-launch/logs/torchrun")]


@pytest.mark.subprocess
def test_dry_run_does_not_import_the_training_stack(dpo_workspace):
    probe = ("import sys; from launcher.cli import main; code = main(['train', sys.argv[1], '--dry-run']); "
             "heavy = sorted(m for m in ('torch', 'transformers', 'deepspeed', 'trl', 'peft', 'tensorboard', "
             "'llamafactory') if m in sys.modules); print(code, heavy)")
    out = subprocess.run([sys.executable, "-c", probe, str(dpo_workspace.config)], capture_output=True, text=True,
                         cwd=dpo_workspace.root, env=cli_env(), check=False)
    assert out.stdout.splitlines()[-1] == "0 []", out.stderr
