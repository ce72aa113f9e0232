"""Monte Carlo engine and the money: price paths, collateral, insurance, stress tests."""
