"""Job kinds through a real daemon with the contract-only fake trainer: refusals, restarts, run files.

Cheap where the real jobs (test_daemon_jobs.py) are slow: every bad request
gets a 4xx with a message, a preprocess job and a diagnose job survive a
SIGKILL of the daemon (reattached by the nonce on the command line, and in
the environment for diagnose), stop and resume rerun `prepare` without
`--resume`, and the history and diagnosis routes read the run dir's files
the way the dashboard needs (torn lines ignored, malformed files named).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from qwen_daemon.protocol import RunHistory, RunView
from qwen_train.prepare.spec import PrepareSpec, SourceSpec, encode_prepare_spec
from tests.conftest import MakeDir, python_env
from tests.test_daemon_harness import (
    DaemonProcess,
    make_spec,
    raw_request,
    remove_tree,
    short_tmp_dir,
    trainer_wrapper,
    wait_until,
)


@pytest.fixture(scope="module")
def short() -> Iterator[Path]:
    path = short_tmp_dir()
    yield path
    remove_tree(path)


def start(short: Path, state: Path, sock: str = "d.sock") -> DaemonProcess:
    return DaemonProcess(state, short / sock, trainer_wrapper(short), "--sample-period", "0.2",
                         "--stop-timeout", "5", "--journal-socket", "", "--docker-user", "1000:1000",
                         "--bind-root", str(short / "srv")).start()


@pytest.fixture(scope="module")
def daemon(short: Path, module_dir: MakeDir) -> Iterator[DaemonProcess]:
    proc = start(short, module_dir("state"))
    yield proc
    for view in proc.client.runs().runs:
        if view.state in ("launching", "running"):
            proc.client.stop(view.name)
    wait_until(lambda: all(v.state not in ("launching", "running", "stopping") for v in proc.client.runs().runs),
               15, "every job to end")
    proc.stop()


@pytest.fixture(scope="module")
def paths(module_dir: MakeDir) -> Path:
    root = module_dir("inputs")
    (root / "model").mkdir()
    (root / "corpus.jsonl").write_text("")
    return root


def prepare_spec(root: Path, name: str, **changes: Any) -> PrepareSpec:
    spec = PrepareSpec(name=name, out=str(root / "out" / name), model=str(root / "model"),
                       sources=[SourceSpec(kind="upstream_jsonl", path=str(root / "corpus.jsonl"), role="train")])
    return msgspec.structs.replace(spec, **changes)


def post(daemon: DaemonProcess, path: str, body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw_request(daemon.socket, "POST", path, data, {"Content-Type": "application/json"})


def expect(result: tuple[int, Any], status: int, *fragments: str) -> None:
    code, body = result
    assert code == status, body
    for fragment in fragments:
        assert fragment in body["error"], body


def prep_body(root: Path, name: str, **changes: Any) -> dict[str, Any]:
    return {"kind": "preprocess", "prepare": json.loads(encode_prepare_spec(prepare_spec(root, name, **changes)))}


def ended(daemon: DaemonProcess, name: str, timeout: float = 15.0) -> RunView:
    def over() -> RunView | None:
        view = daemon.client.run(name).run
        return view if view.state not in ("launching", "running", "stopping") else None

    return wait_until(over, timeout, f"{name} to end")


def test_unknown_runs_and_bad_names_get_4xx(daemon: DaemonProcess) -> None:
    for method, route in (("GET", "history"), ("GET", "diagnosis"), ("POST", "diagnose")):
        expect(raw_request(daemon.socket, method, f"/runs/nope/{route}", b"{}" if method == "POST" else None),
               404, "no run named 'nope'")
        expect(raw_request(daemon.socket, method, f"/runs/..%2Fx/{route}"), 400, "is not allowed")
    expect(raw_request(daemon.socket, "GET", "/runs/nope/diagnose"), 405, "use POST")


def test_bad_launch_requests_for_the_new_kinds(daemon: DaemonProcess, paths: Path) -> None:
    spec = json.loads(msgspec.json.encode(make_spec(paths, "kinds")))
    expect(post(daemon, "/runs", {"kind": "preprocess", "prepare": {"name": "p", "out": "/x"}}), 400,
           "invalid launch request", "missing required field")
    expect(post(daemon, "/runs", prep_body(paths, "../x")), 400, "'../x' is not allowed")
    expect(post(daemon, "/runs", prep_body(paths, "rel", out="bundles/rel")), 400, "prepare.out 'bundles/rel'")
    expect(post(daemon, "/runs", prep_body(paths, "nosrc", sources=[])), 400, "sources is empty")
    body = prep_body(paths, "badkind")
    body["prepare"]["sources"][0]["kind"] = "youtube"
    expect(post(daemon, "/runs", body), 400, "$.prepare.sources[0].kind")
    expect(post(daemon, "/runs", prep_body(paths, "nomodel", model=str(paths / "gone"))), 422,
           f"prepare.model {paths / 'gone'} does not exist")
    expect(post(daemon, "/runs", {"kind": "preprocess", "spec": spec}), 400, "a preprocess job takes `prepare`")
    expect(post(daemon, "/runs", {"kind": "preprocess"}), 400, "exactly one of `prepare`")
    expect(post(daemon, "/runs", {"spec": spec, "prepare": prep_body(paths, "p")["prepare"]}), 400,
           "kind \"preprocess\"")
    expect(post(daemon, "/runs", {"spec": spec, "surface": "lab"}), 400, "from its spec")
    expect(post(daemon, "/runs", {"kind": "diagnose", "spec": spec}), 400, "POST /runs/{name}/diagnose")
    expect(post(daemon, "/runs", {**prep_body(paths, "unreg"), "surface": "nowhere"}), 403,
           "rule surface-registered")
    expect(post(daemon, "/runs", {**prep_body(paths, "boxed"), "runner": "docker"}), 422, "outside the bind roots")

    broken = paths / "broken.json"
    broken.write_text('{"name": "b", "out": "o", "model": "m", "sources": [{"kind": "rixvox"}]}')
    expect(post(daemon, "/runs", {"kind": "preprocess", "spec_path": str(broken)}), 422, str(broken),
           "missing required field `path`")
    expect(post(daemon, "/runs", {"kind": "preprocess", "spec_path": "broken.json"}), 400, "is relative")
    assert not (daemon.state_dir / "runs" / "b").exists()


def test_diagnose_refusals_and_names_owned_by_one_kind(daemon: DaemonProcess, paths: Path) -> None:
    client = daemon.client
    view = client.launch(spec=make_spec(paths, "busy"))
    expect(post(daemon, "/runs/busy/diagnose", {}), 409, "stop it first", "qwen-daemon stop busy --wait")
    expect(post(daemon, "/runs/busy/diagnose", {"step": 0}), 400, "steps count from 1")
    expect(post(daemon, "/runs/busy/diagnose", {"stepp": 3}), 400, "invalid diagnose request")
    expect(post(daemon, "/runs", prep_body(paths, "busy")), 409, "already active")
    client.stop("busy")
    assert ended(daemon, "busy").state == "stopped"
    expect(post(daemon, "/runs", prep_body(paths, "busy")), 409, "'busy' is the name of a train job")
    prep = client.prepare(prepare_spec(paths, "prep-a"))
    assert prep.kind == "preprocess" and prep.lane == "-"
    client.stop("prep-a")
    assert ended(daemon, "prep-a").state == "stopped"
    expect(post(daemon, "/runs/prep-a/diagnose", {}), 422, "'prep-a' is a preprocess job")
    expect(post(daemon, "/runs", {"spec": json.loads(msgspec.json.encode(make_spec(paths, "prep-a")))}), 409,
           "'prep-a' is the name of a preprocess job")
    assert view.kind == "train"


def test_history_and_diagnosis_read_the_run_dir_safely(daemon: DaemonProcess, paths: Path) -> None:
    client = daemon.client
    client.launch(spec=make_spec(paths, "files"))
    client.stop("files")
    run_dir = Path(ended(daemon, "files").run_dir)
    expect(raw_request(daemon.socket, "GET", "/runs/files/diagnosis"), 404, "has no diagnosis yet",
           "qwen-daemon diagnose files")
    assert client.history("files").losses == []

    lines = [json.dumps({"step": s, "total": 3.0 / s, "talker": 2.0 / s, "code_predictor": 1.0 / s})
             for s in range(1, 6)]
    (run_dir / "losses.jsonl").write_text("\n".join(lines) + '\n{"step": 6, "total": 0.')  # torn last line
    assert [p.step for p in client.history("files").losses] == [1, 2, 3, 4, 5]
    with open(run_dir / "losses.jsonl", "a") as handle:  # the write completes, another follows
        handle.write('5, "talker": 0.3, "code_predictor": 0.2}\n' + lines[0].replace('"step": 1', '"step": 7') + "\n")
    got = client.history("files").losses
    assert [p.step for p in got] == [1, 2, 3, 4, 5, 6, 7] and got[5].total == 0.5

    (run_dir / "report.json").write_text('{"evals": [{"step": 2, "losses": {"total": 1.0, "talker": 0.5, ')
    expect(raw_request(daemon.socket, "GET", "/runs/files/history"), 422, str(run_dir / "report.json"), "malformed")
    evals = {"evals": [{"step": 2, "rows": 4, "losses": {"total": 1.0, "talker": 0.5, "code_predictor": 0.5},
                        "per_split": {"held_out_speaker": {"total": 1.5, "talker": 1.0, "code_predictor": 0.5}}}]}
    (run_dir / "report.json").write_text(json.dumps(evals))
    (point,) = client.history("files").evals
    assert (point.step, point.total, point.per_split) == (2, 1.0, {"held_out_speaker": 1.5})

    (run_dir / "diagnosis.json").write_text('{"step": 3}')
    expect(raw_request(daemon.socket, "GET", "/runs/files/diagnosis"), 422, str(run_dir / "diagnosis.json"),
           "malformed")


def test_preprocess_and_diagnose_jobs_survive_a_daemon_kill(short: Path, paths: Path,
                                                            module_dir: MakeDir) -> None:
    state = module_dir("restart")
    first = start(short, state, "r.sock")
    try:
        done = first.client.launch(spec=make_spec(paths, "base"))
        first.client.stop("base")
        assert ended(first, "base").state == "stopped"
        prep = first.client.prepare(prepare_spec(paths, "prep-r"))
        job = first.client.diagnose("base", step=3)
        assert job.name == "base.diagnose" and job.parent == "base"
        wait_until(lambda: first.client.run("prep-r").run.health == "live", 10, "a live preprocess heartbeat")
        wait_until(lambda: first.client.run("base.diagnose").run.health == "live", 10, "the replay process")
    finally:
        first.stop(signal.SIGKILL)
    second = start(short, state, "r.sock")
    try:
        client = second.client
        for name, nonce in (("prep-r", prep.nonce), ("base.diagnose", job.nonce)):
            detail = client.run(name)
            assert detail.run.state == "running" and detail.run.nonce == nonce, detail.run
            assert any(e.kind == "reattach" for e in detail.events), detail.events
        assert wait_until(lambda: client.run("prep-r").run.health == "live", 10, "live after the restart")
        assert client.run("base.diagnose").run.health == "live"
        (Path(done.run_dir) / "release").write_text("")
        replay = ended(second, "base.diagnose")
        assert replay.state == "completed" and replay.exit_code is None, replay  # not our child any more
        assert (replay.message or "").startswith("fake diagnosis of step 3 (exit code unknown"), replay.message
        assert client.diagnosis("base").summary.startswith("fake diagnosis of step 3")
        client.stop("prep-r")
        assert ended(second, "prep-r").state == "stopped"
        again = client.resume("prep-r")
        assert again.kind == "preprocess" and again.nonce != prep.nonce
        wait_until(lambda: client.run("prep-r").run.health == "live", 10, "the resumed preprocess job")
        client.stop("prep-r")
        assert ended(second, "prep-r").state == "stopped"
        log = (Path(again.run_dir) / "trainer.log").read_text()
        assert log.count("fake prepare\n") == 2 and "--resume" not in log
        replay_log = (Path(replay.run_dir) / "trainer.log").read_text()
        assert f"diagnose {done.run_dir} --step 3" in replay_log
    finally:
        for view in second.client.runs().runs:
            if view.state == "running":
                second.client.stop(view.name)
        second.stop()


def cli(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "qwen_daemon", *args, "--socket", str(daemon.socket)]
    return subprocess.run(command, capture_output=True, text=True, env=python_env(), timeout=60, check=False)


def test_cli_prepare_diagnose_and_history(daemon: DaemonProcess, paths: Path) -> None:
    spec_file = paths / "cli-prep.json"
    spec_file.write_text(json.dumps({"name": "cli-prep", "out": "out/cli-prep", "model": "model",
                                     "sources": [{"kind": "upstream_jsonl", "path": "corpus.jsonl"}]}))
    done = cli(daemon, "prepare", str(spec_file), "--json")
    assert done.returncode == 0, done.stderr
    view = msgspec.json.decode(done.stdout, type=RunView)
    assert (view.name, view.kind, view.lane) == ("cli-prep", "preprocess", "-")
    stopped = cli(daemon, "stop", "cli-prep", "--wait")
    assert stopped.returncode == 0 and "run cli-prep stopped" in stopped.stdout, stopped.stderr
    refused = cli(daemon, "diagnose", "cli-prep")
    assert refused.returncode == 1 and "is a preprocess job" in refused.stderr
    (paths / "broken-cli.json").write_text('{"name": "x"}')
    bad = cli(daemon, "prepare", str(paths / "broken-cli.json"))
    assert bad.returncode == 2 and "broken-cli.json" in bad.stderr and "missing required field" in bad.stderr

    daemon.client.launch(spec=make_spec(paths, "cli-run"))
    daemon.client.stop("cli-run")
    run_dir = Path(ended(daemon, "cli-run").run_dir)
    (run_dir / "losses.jsonl").write_text(
        "".join(json.dumps({"step": s, "total": 2.0, "talker": 1.5, "code_predictor": 0.5}) + "\n" for s in (1, 2)))
    text = cli(daemon, "history", "cli-run")
    assert text.returncode == 0 and "2 loss points, steps 1..2" in text.stdout, text.stderr
    as_json = cli(daemon, "history", "cli-run", "--json")
    assert [p.step for p in msgspec.json.decode(as_json.stdout, type=RunHistory).losses] == [1, 2]
    started = cli(daemon, "diagnose", "cli-run", "--step", "2")
    assert started.returncode == 0 and "cli-run.diagnose" in started.stdout and "diagnose" in started.stdout
    (run_dir / "release").write_text("")
    replay = ended(daemon, "cli-run.diagnose")
    assert replay.state == "completed" and replay.message == "fake diagnosis of step 2", replay
    shown = cli(daemon, "show", "cli-run.diagnose")
    assert "replays run:    cli-run" in shown.stdout and "kind:           diagnose" in shown.stdout, shown.stdout
