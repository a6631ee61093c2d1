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


def test_load_config__names_addresses__keeps_the_other_defaults(tmp_path):
    from marginsim.protocol import load_config

    path = tmp_path / "deploy.toml"
    path.write_text(
        'settlement_address = "0x00000000000000000000000000000000000000aa"\n'
        "[[collaterals]]\n"
        'symbol = "WETH"\n'
        "decimals = 18\n"
        "weight = 0.85\n"
        "cap = 1000\n"
        "liquidation_discount = 0.05\n"
        'address = "0x00000000000000000000000000000000000000bb"\n'
        'feed = { price_usd = 2000, aggregator = "0x00000000000000000000000000000000000000cc" }\n'
        "[[markets]]\n"
        'name = "ETH-PERP"\n'
        'underlying = "WETH"\n'
    )
    config = load_config(path)
    assert config.settlement_address.endswith("aa")
    assert [c.symbol for c in config.collaterals] == ["WETH"]
    assert config.collaterals[0].address.endswith("bb") and config.collaterals[0].feed.aggregator.endswith("cc")
    assert config.markets[0].base_mmr == DEFAULT_CONFIG.markets[0].base_mmr
    assert config.liquidation_buffer == DEFAULT_CONFIG.liquidation_buffer


def test_load_config__unknown_field__one_line_error(tmp_path):
    import pytest

    from marginsim.protocol import DeploymentError, load_config

    path = tmp_path / "deploy.toml"
    path.write_text("settlement_adress = 1\n")
    with pytest.raises(DeploymentError, match=r"^config: unknown field 'settlement_adress' \(fields: "):
        load_config(path)


def test_load_protocol__file_from_before_orders__one_line_error(project, deployer, tmp_path):
    """A deployments file written before delayed orders has no Orders address: one line saying
    to redeploy, not a KeyError."""
    import json

    import pytest

    protocol = deploy_protocol(project, deployer, DEFAULT_CONFIG)
    path = tmp_path / "deployment.json"
    protocol.save(path)
    data = json.loads(path.read_text())
    del data["addresses"]["orders"]
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit, match=r"^protocol: deployment file .* has no orders address \(written by an older version\)"):
        load_protocol(project, path)
