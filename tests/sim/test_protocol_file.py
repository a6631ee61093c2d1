from marginsim.protocol import DEFAULT_CONFIG, deploy_protocol, load_protocol


def test_load_protocol__round_trips_the_deployment_file(project, deployer, tmp_path):
    protocol = deploy_protocol(project, deployer, DEFAULT_CONFIG)
    path = tmp_path / "deployment.json"
    protocol.save(path)
    loaded = load_protocol(project, path)
    assert loaded.addresses() == protocol.addresses()
    assert loaded.config == protocol.config
    assert loaded.clearinghouse.market_count() == 2


def test_load_protocol__missing_file__one_line_error(project, tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="no deployment file"):
        load_protocol(project, tmp_path / "nope.json")
