from node_janitor.cli import main


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: node-janitor" in capsys.readouterr().err


def test_prune_refuses_a_malformed_policy_naming_each_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: nodejanitor.io/v1alpha1\nkind: CleanupPolicy\nmetadata: {name: x}\n"
        "spec:\n  thresholds: {highPercent: 80, lowPercent: 90}\n  images: {minAge: 5 minutes, bogus: 1}\n"
    )
    # The policy is validated before the runtime is contacted: the socket does not even exist.
    assert main(["prune", "--policy", str(bad), "--containerd-socket", str(tmp_path / "none.sock")]) == 2
    err = capsys.readouterr().err
    assert "spec.thresholds: lowPercent (90) must be less than highPercent (80)" in err
    assert "spec.images.minAge: invalid duration '5 minutes'" in err
    assert "spec.images.bogus: unknown field" in err


def test_prune_missing_policy_file_is_one_line(tmp_path, capsys):
    assert main(["prune", "--policy", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read policy" in err[0]


def test_crd_prints_exactly_what_crds_holds(capsys):
    from pathlib import Path

    import yaml

    assert main(["crd"]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    kinds = {doc["spec"]["names"]["kind"] for doc in printed}
    assert kinds == {"CleanupPolicy", "NodeCleanup"}
    on_disk = [
        doc
        for f in sorted(Path(__file__).parents[2].joinpath("crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(f.read_text())
    ]
    assert sorted(printed, key=lambda d: d["metadata"]["name"]) == sorted(on_disk, key=lambda d: d["metadata"]["name"])


def test_demo_refuses_sizes_that_are_not_a_loop_disk(capsys):
    # 0 used to run the demo on the host's own file system (and fill it); no bed may even start here.
    for size in ("0", "-1Gi", "1Mi", "1Ti"):
        assert main(["demo", f"--disk-size={size}"]) == 2, size
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "size" in err[0], err


def test_metrics_bind_address_must_be_an_ip_address(capsys):
    for command in (["agent", "--node-name", "n"], ["operator"]):
        try:
            code = main([*command, "--metrics-bind-address", "localhost:80"])
        except SystemExit as exc:  # argparse refuses bad values with exit status 2
            code = exc.code
        assert code == 2
        assert "--metrics-bind-address: must be an IP address" in capsys.readouterr().err
