"""The one keeper: what the simulator's keepers, the keeper bot (`marginsim.bots.keeper`) and the
crash story (`marginsim.story`) each run.

- `indexer.AccountIndexer`: which accounts exist and which changed, from the account events
  (read forward in chunks by `indexer.LogReader`, which the order and request indexes share);
- `orders`: the orders waiting to be filled (`OrderIndexer`, from Orders' events), which a round
  has made due (`due_orders`) and the fill (`fill_order`), paid the order's execution fee;
- `requests`: the LP deposit and redemption requests waiting (`RequestIndexer`, from the pool's
  events), which are in their window (`due_requests`) and the execution (`execute`), paid the
  request's fee (one past its window is left to its LP: a lapse pays its caller nothing);
- `mirror.Keeper`: every indexed account mirrored off-chain with the contracts' own integer
  arithmetic (`marginsim.risk`), the candidates below maintenance and how the contract will
  size each liquidation;
- `market.read_markets`: one read of the markets and prices the mirror needs (a halted price
  leaves its market out);
- `model.LiquidationModel`: whether a liquidation pays its gas;
- `planner`: what to send (the liquidations that pay, the collateral for sale), a function of
  the mirror and one read of the markets;
- `executor`: confirming on chain in batches, liquidating, decoding what came back.
"""
