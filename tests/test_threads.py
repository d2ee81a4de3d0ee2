"""Thread count from the cores a process may use: affinity, cgroup v1/v2 quotas, the threads parameter."""

import os

import pytest

from aims_kit.core import threads


def fake_cgroup(tmp_path, proc_line: str, files: dict[str, str]):
    root = tmp_path / "cgroup"
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(proc_line + "\n")
    return root, proc


@pytest.mark.parametrize("proc_line, files, expected", [
    ("0::/user.slice/job", {"user.slice/job/cpu.max": "150000 100000\n"}, 2),   # v2, 1.5 CPUs: 2 threads
    ("0::/job", {"job/cpu.max": "max 100000\n"}, None),                         # v2, no quota
    ("0::/", {"cpu.max": "50000 100000\n"}, 1),                                  # v2 at the root, half a CPU
    ("4:cpu,cpuacct:/docker/abc", {"cpu,cpuacct/cpu.cfs_quota_us": "300000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 3),
    ("4:cpu:/", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),  # v1, unlimited
    ("5:memory:/x", {}, None),                                                   # no cpu controller
])
def test_cgroup_quota(tmp_path, proc_line, files, expected):
    root, proc = fake_cgroup(tmp_path, proc_line, files)
    assert threads.cgroup_quota_cores(root, proc) == expected


def test_automatic_threads_never_exceed_the_affinity(monkeypatch):
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert 1 <= threads.plan_threads(0) <= len(os.sched_getaffinity(0))
    assert threads.plan_threads(3) == 3


@pytest.mark.parametrize("raw", ["two", "-1", "1.5"])
def test_bad_threads_parameter_is_a_clear_error(monkeypatch, raw):
    monkeypatch.setenv(threads.THREADS_ENV, raw)
    with pytest.raises(ValueError, match="AIMS_KIT_THREADS"):
        threads.requested_threads()


def test_threads_parameter_sets_torch_threads_and_wins_over_the_environment(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    monkeypatch.setenv(threads.THREADS_ENV, "2")
    try:
        assert threads.configure_threads() == 2
        assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "2"
        monkeypatch.delenv(threads.THREADS_ENV)  # automatic: a variable the user set is respected
        monkeypatch.delenv("MKL_NUM_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert threads.configure_threads() == 1 and torch.get_num_threads() == 1
        assert "MKL_NUM_THREADS" not in os.environ
        monkeypatch.delenv("OMP_NUM_THREADS")  # nothing set: the available cores, written for torch to read
        assert threads.configure_threads() == threads.available_cores() == int(os.environ["MKL_NUM_THREADS"])
    finally:
        torch.set_num_threads(before)


def test_describe_says_where_the_number_comes_from(monkeypatch):
    assert "threads=3 asked for" in threads.describe(3, 3)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert "from OMP_NUM_THREADS=1 in the environment" in threads.describe(1)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert "automatic from" in threads.describe(2) and "-p threads=N" in threads.describe(2)
